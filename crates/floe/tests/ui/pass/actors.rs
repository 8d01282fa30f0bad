use floe::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Message, Serialize, Deserialize)]
#[message(name = "shop.AddItem", reply = usize)]
struct AddItem(String);

#[derive(Message, Serialize, Deserialize)]
#[message(name = "shop.Clear")]
struct Clear;

#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "shop.Cart", handles(AddItem, Clear))]
struct Cart {
    items: Vec<String>,
}

impl Handler<AddItem> for Cart {
    type Error = Never;
    async fn handle(&mut self, m: AddItem, _ctx: &mut Context<Self>) -> Result<usize, Never> {
        self.items.push(m.0);
        Ok(self.items.len())
    }
}

impl Handler<Clear> for Cart {
    type Error = String;
    async fn handle(&mut self, _: Clear, _ctx: &mut Context<Self>) -> Result<(), String> {
        self.items.clear();
        Ok(())
    }
}

/// Stateless, with its own lifecycle hooks.
#[derive(Actor, Default)]
#[actor(name = "shop.Greeter", stateless, lifecycle, handles(Clear))]
struct Greeter;

impl Lifecycle for Greeter {
    async fn on_activate(&mut self, _ctx: &mut Context<Self>) -> Result<(), ActorError> {
        Ok(())
    }
}

impl Handler<Clear> for Greeter {
    type Error = Never;
    async fn handle(&mut self, _: Clear, _ctx: &mut Context<Self>) -> Result<(), Never> {
        Ok(())
    }
}

/// The cart's state before `items` held prices.
#[derive(Deserialize)]
struct CartV1 {
    items: Vec<String>,
}

/// Version 2 of the state, read from version 1 by `upgrade`.
#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "shop.PricedCart", version = 2, migrate = PricedCart::upgrade, handles(Clear))]
struct PricedCart {
    items: Vec<(String, u64)>,
}

impl PricedCart {
    fn upgrade(old: floe::StoredState<'_>) -> Result<Self, floe::StateError> {
        let v1: CartV1 = old.decode()?;
        Ok(Self {
            items: v1.items.into_iter().map(|i| (i, 0)).collect(),
        })
    }
}

impl Handler<Clear> for PricedCart {
    type Error = Never;
    async fn handle(&mut self, _: Clear, _ctx: &mut Context<Self>) -> Result<(), Never> {
        self.items.clear();
        Ok(())
    }
}

fn main() {
    assert_eq!(<Cart as floe::Actor>::NAME, "shop.Cart");
    assert_eq!(<Greeter as floe::Actor>::NAME, "shop.Greeter");
    assert_eq!(<AddItem as floe::Message>::NAME, "shop.AddItem");
    assert_eq!(<Clear as floe::Message>::NAME, "shop.Clear");
    assert_eq!(<Cart as floe::Actor>::MESSAGES, &["shop.AddItem", "shop.Clear"]);
    let v1 = Cart {
        items: vec!["pear".into()],
    };
    let stored = floe::codec::encode_state(1, &v1).expect("encode");
    let v2 = <PricedCart as floe::Actor>::create("k", Some(&stored)).expect("migrated");
    assert_eq!(v2.items, vec![("pear".to_string(), 0)]);
    let again = floe::Actor::save(&v2).expect("save").expect("stateful");
    assert_eq!(floe::StoredState::parse(&again).expect("header").version(), 2);
}
