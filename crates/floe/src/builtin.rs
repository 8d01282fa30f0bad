//! Built-in actors used by demos, the consistency harness and the benchmarks: a compare-and-set
//! register, a counter, a stateless echo, and a bank (accounts that refuse to go negative, and a
//! stateless teller that moves money between them with nested calls), keyed by string. Register
//! them with [`crate::NodeBuilder::register_builtins`].

use serde::{Deserialize, Serialize};

use crate::{Actor, Context, Handler, Message, Never};

/// A linearizable register holding an optional string (`None` is "absent").
#[derive(Debug, Default, Serialize, Deserialize, Actor)]
#[actor(name = "floe.Register", handles(Read, Write, Cas))]
pub struct Register {
    value: Option<String>,
}

/// Read a register.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "floe.Register.Read", reply = Option<String>)]
pub struct Read;

/// Overwrite a register.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "floe.Register.Write")]
pub struct Write(pub String);

/// Set the register to `new` if it holds `expect`.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "floe.Register.Cas", reply = CasOutcome)]
pub struct Cas {
    /// The value the register must hold (`None`: absent).
    pub expect: Option<String>,
    /// The value to store.
    pub new: String,
}

/// What a [`Cas`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CasOutcome {
    /// The register held the expected value and now holds the new one.
    Swapped,
    /// The register held this instead; nothing changed.
    Mismatch(Option<String>),
}

impl Handler<Read> for Register {
    type Error = Never;
    async fn handle(&mut self, _: Read, _: &mut Context<Self>) -> Result<Option<String>, Never> {
        Ok(self.value.clone())
    }
}

impl Handler<Write> for Register {
    type Error = Never;
    async fn handle(&mut self, Write(v): Write, _: &mut Context<Self>) -> Result<(), Never> {
        self.value = Some(v);
        Ok(())
    }
}

impl Handler<Cas> for Register {
    type Error = Never;
    async fn handle(&mut self, c: Cas, _: &mut Context<Self>) -> Result<CasOutcome, Never> {
        if self.value == c.expect {
            self.value = Some(c.new);
            Ok(CasOutcome::Swapped)
        } else {
            Ok(CasOutcome::Mismatch(self.value.clone()))
        }
    }
}

/// A counter.
#[derive(Debug, Default, Serialize, Deserialize, Actor)]
#[actor(name = "floe.Counter", handles(Increment, Value))]
pub struct Counter {
    value: i64,
}

/// Add to a counter; replies with the new value.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "floe.Counter.Add", reply = i64)]
pub struct Increment(pub i64);

/// Read a counter.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "floe.Counter.Read", reply = i64)]
pub struct Value;

impl Handler<Increment> for Counter {
    type Error = Never;
    async fn handle(
        &mut self,
        Increment(n): Increment,
        _: &mut Context<Self>,
    ) -> Result<i64, Never> {
        self.value += n;
        Ok(self.value)
    }
}

impl Handler<Value> for Counter {
    type Error = Never;
    async fn handle(&mut self, _: Value, _: &mut Context<Self>) -> Result<i64, Never> {
        Ok(self.value)
    }
}

/// A stateless actor that answers [`Ping`] with its payload: nothing is committed and no read
/// index is taken, so a call costs only routing and the mailbox (used by `floe-bench`).
#[derive(Debug, Default, Actor)]
#[actor(name = "floe.Echo", stateless, handles(Ping))]
pub struct Echo;

/// Ask an [`Echo`] to send the number back.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "floe.Echo.Ping", reply = u64)]
pub struct Ping(pub u64);

impl Handler<Ping> for Echo {
    type Error = Never;
    async fn handle(&mut self, Ping(n): Ping, _: &mut Context<Self>) -> Result<u64, Never> {
        Ok(n)
    }
}

/// A bank account: a balance that never goes below zero.
#[derive(Debug, Default, Serialize, Deserialize, Actor)]
#[actor(name = "floe.Account", handles(Credit, Debit, Balance))]
pub struct Account {
    balance: i64,
}

/// Add a non-negative amount to an account; replies with the new balance.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "floe.Account.Credit", reply = i64)]
pub struct Credit(pub i64);

/// Take a non-negative amount from an account if it holds that much; replies with the new
/// balance.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "floe.Account.Debit", reply = i64)]
pub struct Debit(pub i64);

/// Read an account's balance.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "floe.Account.Balance", reply = i64)]
pub struct Balance;

/// Why an account or the teller refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum BankError {
    /// The source account holds less than the amount (its balance is given).
    #[error("insufficient funds: the balance is {0}")]
    Insufficient(i64),
    /// A negative amount, or a transfer from an account to itself.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The teller's debit of the source failed (the text says why); nothing moved.
    #[error("debit failed: {0}")]
    DebitFailed(String),
    /// The teller debited the source but could not credit the destination (the text says why).
    /// Retrying the transfer with its request id completes it or says why not.
    #[error("credit failed after the debit: {0}")]
    CreditFailed(String),
}

impl Handler<Credit> for Account {
    type Error = BankError;
    async fn handle(&mut self, Credit(n): Credit, _: &mut Context<Self>) -> Result<i64, BankError> {
        if n < 0 {
            return Err(BankError::Invalid(format!("credit of {n}")));
        }
        self.balance = self
            .balance
            .checked_add(n)
            .ok_or_else(|| BankError::Invalid("balance overflow".into()))?;
        Ok(self.balance)
    }
}

impl Handler<Debit> for Account {
    type Error = BankError;
    async fn handle(&mut self, Debit(n): Debit, _: &mut Context<Self>) -> Result<i64, BankError> {
        if n < 0 {
            return Err(BankError::Invalid(format!("debit of {n}")));
        }
        if self.balance < n {
            return Err(BankError::Insufficient(self.balance));
        }
        self.balance -= n;
        Ok(self.balance)
    }
}

impl Handler<Balance> for Account {
    type Error = Never;
    async fn handle(&mut self, _: Balance, _: &mut Context<Self>) -> Result<i64, Never> {
        Ok(self.balance)
    }
}

/// A stateless teller: moves money between [`Account`]s by a [`Debit`] of the source and then a
/// [`Credit`] of the destination, each a nested call (to wherever those accounts live). A retry
/// with the same request id repeats both calls with the same derived ids, so neither applies
/// twice.
#[derive(Debug, Default, Actor)]
#[actor(name = "floe.Teller", stateless, handles(Transfer))]
pub struct Teller;

/// Move `amount` from account `from` to account `to`.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "floe.Teller.Transfer", reply = Transferred)]
pub struct Transfer {
    /// The source account's key.
    pub from: String,
    /// The destination account's key.
    pub to: String,
    /// How much (positive).
    pub amount: i64,
}

/// The balances right after a [`Transfer`]'s debit and credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transferred {
    /// The source's balance after the debit.
    pub from_balance: i64,
    /// The destination's balance after the credit.
    pub to_balance: i64,
}

impl Handler<Transfer> for Teller {
    type Error = BankError;
    async fn handle(
        &mut self,
        t: Transfer,
        ctx: &mut Context<Self>,
    ) -> Result<Transferred, BankError> {
        if t.amount <= 0 || t.from == t.to {
            return Err(BankError::Invalid(format!(
                "transfer of {} from {:?} to {:?}",
                t.amount, t.from, t.to
            )));
        }
        let from_balance = match ctx.actor::<Account>(&t.from).call(Debit(t.amount)).await {
            Ok(b) => b,
            Err(crate::CallError::Rejected(e)) => return Err(e),
            // The runtime reports an unknown nested outcome as this call's outcome; a definite
            // failure means nothing moved.
            Err(crate::CallError::Failed(f)) => return Err(BankError::DebitFailed(f.to_string())),
        };
        let to_balance = match ctx.actor::<Account>(&t.to).call(Credit(t.amount)).await {
            Ok(b) => b,
            Err(e) => return Err(BankError::CreditFailed(e.to_string())),
        };
        Ok(Transferred {
            from_balance,
            to_balance,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Node;

    #[tokio::test]
    async fn echo_is_stateless_and_answers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = Node::builder()
            .data_dir(dir.path())
            .register_builtins()
            .build()
            .await
            .expect("node");
        let echo = node.actor::<Echo>("e");
        assert_eq!(echo.call(Ping(7)).await.expect("call"), 7);
        assert_eq!(echo.call(Ping(8)).await.expect("call"), 8);
        assert!(Echo.save().expect("save").is_none(), "Echo keeps no state");
        node.shutdown().await.expect("shutdown");
    }

    #[tokio::test]
    async fn teller_moves_money_and_refuses_overdrafts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = Node::builder()
            .data_dir(dir.path())
            .register_builtins()
            .build()
            .await
            .expect("node");
        let a = node.actor::<Account>("a");
        assert_eq!(a.call(Credit(10)).await.expect("credit"), 10);
        let teller = node.actor::<Teller>("t");
        let moved = teller
            .call(Transfer {
                from: "a".into(),
                to: "b".into(),
                amount: 7,
            })
            .await
            .expect("transfer");
        assert_eq!(
            moved,
            Transferred {
                from_balance: 3,
                to_balance: 7
            }
        );
        let over = teller
            .call(Transfer {
                from: "a".into(),
                to: "b".into(),
                amount: 4,
            })
            .await;
        assert!(
            matches!(
                over,
                Err(crate::CallError::Rejected(BankError::Insufficient(3)))
            ),
            "{over:?}"
        );
        assert_eq!(a.call(Balance).await.expect("balance"), 3);
        assert_eq!(
            node.actor::<Account>("b").call(Balance).await.expect("b"),
            7
        );
        let neg = a.call(Debit(-1)).await;
        assert!(matches!(
            neg,
            Err(crate::CallError::Rejected(BankError::Invalid(_)))
        ));
        node.shutdown().await.expect("shutdown");
    }
}
