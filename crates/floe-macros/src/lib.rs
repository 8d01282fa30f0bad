//! Derive macros for Floe: `#[derive(Actor)]` and `#[derive(Message)]`.
//!
//! Generated code refers to the `floe` crate by its absolute path `::floe`.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::quote;
use syn::{DeriveInput, LitStr, Path, Type, parse_macro_input, spanned::Spanned};

/// Implements `floe::Message`.
///
/// ```ignore
/// #[derive(Message, Serialize, Deserialize)]
/// #[message(name = "bank.Deposit", reply = u64)]  // reply: () when not given
/// struct Deposit(u64);
/// ```
///
/// `name` is required: it is the message's identity on the wire, so renaming the Rust type does
/// not change it.
#[proc_macro_derive(Message, attributes(message))]
pub fn derive_message(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match message(&input) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn message(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let ident = &input.ident;
    let mut name: Option<LitStr> = None;
    let mut reply: Type = syn::parse_quote!(());
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("message")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                let n: LitStr = meta.value()?.parse()?;
                check_name(&n)?;
                name = Some(n);
                Ok(())
            } else if meta.path.is_ident("reply") {
                reply = meta.value()?.parse()?;
                Ok(())
            } else {
                Err(meta.error(
                    "unknown `message` attribute: expected `name = \"...\"` or `reply = Type`",
                ))
            }
        })?;
    }
    let Some(name) = name else {
        return Err(syn::Error::new(
            ident.span(),
            "a message needs a stable wire name, which a rename of the type does not change: #[message(name = \"app.Deposit\")]",
        ));
    };
    let (imp, ty, wh) = input.generics.split_for_impl();
    Ok(quote! {
        impl #imp ::floe::Message for #ident #ty #wh {
            type Reply = #reply;
            const NAME: &'static str = #name;
        }
    })
}

fn check_name(name: &LitStr) -> syn::Result<()> {
    let v = name.value();
    if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(syn::Error::new(
            name.span(),
            "a name must be non-empty, without whitespace or '/'",
        ));
    }
    Ok(())
}

/// Implements `floe::Actor` (and an empty `floe::Lifecycle` unless `lifecycle` is given).
///
/// ```ignore
/// #[derive(Actor, Default, Serialize, Deserialize)]
/// #[actor(name = "bank.Account", handles(Deposit, Balance))]
/// struct Account { balance: u64 }
/// ```
///
/// * `name = "..."` (required): the stable type name, part of every actor id and of the stored
///   state's key, so renaming the Rust type keeps the state.
/// * `handles(M, ...)`: every message the actor answers; each needs `impl Handler<M>`.
/// * `version = N`: the version of the state's schema (default 1); states are stored with it.
/// * `migrate = path`: `fn(floe::StoredState<'_>) -> Result<Self, floe::StateError>`, which
///   reads a state stored at an older version (requires `version` of 2 or more).
/// * `stateless`: no durable state (no serde bounds; nothing is ever committed).
/// * `lifecycle`: you implement `floe::Lifecycle` yourself (activate/deactivate hooks).
#[proc_macro_derive(Actor, attributes(actor))]
pub fn derive_actor(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match actor(&input) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn actor(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let ident = &input.ident;
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new(
            input.generics.span(),
            "actors cannot be generic: each actor type needs one stable name",
        ));
    }
    let mut name: Option<LitStr> = None;
    let mut version: Option<syn::LitInt> = None;
    let mut migrate: Option<Path> = None;
    let mut handles: Vec<Path> = Vec::new();
    let mut stateless = false;
    let mut lifecycle = false;
    let mut seen_handles = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("actor")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                let n: LitStr = meta.value()?.parse()?;
                check_name(&n)?;
                name = Some(n);
                Ok(())
            } else if meta.path.is_ident("version") {
                let v: syn::LitInt = meta.value()?.parse()?;
                if v.base10_parse::<u32>()? == 0 {
                    return Err(syn::Error::new(v.span(), "state versions start at 1"));
                }
                version = Some(v);
                Ok(())
            } else if meta.path.is_ident("migrate") {
                migrate = Some(meta.value()?.parse()?);
                Ok(())
            } else if meta.path.is_ident("handles") {
                seen_handles = true;
                meta.parse_nested_meta(|m| {
                    handles.push(m.path);
                    Ok(())
                })
            } else if meta.path.is_ident("stateless") {
                stateless = true;
                Ok(())
            } else if meta.path.is_ident("lifecycle") {
                lifecycle = true;
                Ok(())
            } else {
                Err(meta.error(
                    "unknown `actor` attribute: expected `name = \"...\"`, `handles(...)`, `version = N`, `migrate = path`, `stateless` or `lifecycle`",
                ))
            }
        })?;
    }
    let Some(name) = name else {
        return Err(syn::Error::new(
            ident.span(),
            "an actor needs a stable type name, which a rename of the type does not change: #[actor(name = \"app.Account\", ...)]",
        ));
    };
    let version_value = match &version {
        Some(v) => v.base10_parse::<u32>()?,
        None => 1,
    };
    if stateless && (version.is_some() || migrate.is_some()) {
        return Err(syn::Error::new(
            Span::call_site(),
            "a stateless actor has no stored state to version or migrate",
        ));
    }
    if let Some(m) = &migrate
        && version_value < 2
    {
        return Err(syn::Error::new(
            m.span(),
            "`migrate` reads states of older versions: give the current one, `version = 2` or more",
        ));
    }
    let migrate = match &migrate {
        Some(m) => quote!(::std::option::Option::Some(#m as ::floe::codec::Migrate<Self>)),
        None => quote!(::std::option::Option::None),
    };
    if !seen_handles {
        return Err(syn::Error::new(
            Span::call_site(),
            "list the messages this actor handles: #[actor(handles(MessageA, MessageB))]",
        ));
    }
    let arms = handles.iter().map(|m| {
        quote! {
            if message == <#m as ::floe::Message>::NAME {
                return ::floe::__private::dispatch::<Self, #m>(self, payload, ctx).await;
            }
        }
    });
    let names = handles
        .iter()
        .map(|m| quote!(<#m as ::floe::Message>::NAME));
    let state = if stateless {
        quote! {
            fn create(_key: &str, _state: ::std::option::Option<&[u8]>) -> ::std::result::Result<Self, ::floe::StateError> {
                ::std::result::Result::Ok(<Self as ::std::default::Default>::default())
            }
            fn save(&self) -> ::std::result::Result<::std::option::Option<::std::vec::Vec<u8>>, ::floe::StateError> {
                ::std::result::Result::Ok(::std::option::Option::None)
            }
        }
    } else {
        quote! {
            fn create(_key: &str, state: ::std::option::Option<&[u8]>) -> ::std::result::Result<Self, ::floe::StateError> {
                ::floe::__private::decode_state::<Self>(state, #version_value, #migrate)
            }
            fn save(&self) -> ::std::result::Result<::std::option::Option<::std::vec::Vec<u8>>, ::floe::StateError> {
                ::floe::__private::encode_state(#version_value, self).map(::std::option::Option::Some)
            }
        }
    };
    let lifecycle_impl = if lifecycle {
        quote! {}
    } else {
        quote! { impl ::floe::Lifecycle for #ident {} }
    };
    let dup = duplicate(&handles);
    if let Some(p) = dup {
        return Err(syn::Error::new(
            p.span(),
            "message listed twice in handles(...)",
        ));
    }
    Ok(quote! {
        impl ::floe::Actor for #ident {
            const NAME: &'static str = #name;
            const MESSAGES: &'static [&'static str] = &[#(#names),*];
            #state
            fn dispatch<'a>(
                &'a mut self,
                message: &'a str,
                payload: &'a [u8],
                ctx: &'a mut ::floe::Context<Self>,
            ) -> ::floe::__private::BoxFuture<'a, ::std::result::Result<::std::vec::Vec<u8>, ::floe::DispatchError>> {
                ::std::boxed::Box::pin(async move {
                    #(#arms)*
                    ::std::result::Result::Err(::floe::DispatchError::UnknownMessage(message.to_string()))
                })
            }
        }
        #lifecycle_impl
    })
}

fn duplicate(paths: &[Path]) -> Option<&Path> {
    let keys: Vec<String> = paths.iter().map(|p| quote!(#p).to_string()).collect();
    (1..keys.len())
        .find(|&i| keys[..i].contains(&keys[i]))
        .map(|i| &paths[i])
}
