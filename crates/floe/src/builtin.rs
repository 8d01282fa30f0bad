//! Built-in actors used by demos, the consistency harness and the benchmarks: a compare-and-set
//! register, a counter and a stateless echo, keyed by string. Register them with
//! [`crate::NodeBuilder::register_builtins`].

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
}
