use floe::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Message, Serialize, Deserialize)]
#[message(name = "shop.AddItem", reply = usize)]
struct AddItem(String);

#[derive(Message, Serialize, Deserialize)]
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
#[actor(stateless, lifecycle, handles(Clear))]
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

fn main() {
    assert_eq!(<Cart as floe::Actor>::NAME, "shop.Cart");
    assert_eq!(<Greeter as floe::Actor>::NAME, "Greeter");
    assert_eq!(<AddItem as floe::Message>::NAME, "shop.AddItem");
    assert_eq!(<Clear as floe::Message>::NAME, "Clear");
    assert_eq!(<Cart as floe::Actor>::MESSAGES, &["shop.AddItem", "Clear"]);
}
