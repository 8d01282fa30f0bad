//! Builder-style setters for settings structs.
//!
//! Floe's settings structs are `#[non_exhaustive]`, so that adding a setting is not a breaking
//! change; outside their crate they are built from `Default` (or `new`) and these setters:
//! `TransportConfig::default().request_timeout(Duration::from_secs(2))`. Each setter has the
//! name of its field.

/// Implement, for each listed field of a settings struct, a setter of the same name that
/// takes the value and returns the struct.
#[macro_export]
macro_rules! setters {
    ($ty:ty { $($field:ident: $fty:ty),* $(,)? }) => {
        impl $ty {
            $(
                #[doc = concat!("Set [`", stringify!($field), "`](#structfield.", stringify!($field), ").")]
                #[must_use]
                pub fn $field(mut self, value: $fty) -> Self {
                    self.$field = value;
                    self
                }
            )*
        }
    };
}
