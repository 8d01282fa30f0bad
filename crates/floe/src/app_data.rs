//! Values an application shares with its actors (database pools, HTTP clients, settings), one
//! per type, set on the node builder and read from a handler's context.

use std::any::{Any, TypeId, type_name};
use std::collections::HashMap;
use std::sync::Arc;

/// One shared value per type. Build it with [`AppData::with`] (or
/// `NodeBuilder::app_data`), read it with [`AppData::get`] or `Context::app_data`.
#[derive(Clone, Default)]
pub struct AppData {
    values: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for AppData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppData")
            .field("values", &self.values.len())
            .finish()
    }
}

/// No value of the asked type was given to the node: add it with `NodeBuilder::app_data`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no app data of type {0}: give it to NodeBuilder::app_data")]
pub struct MissingAppData(pub &'static str);

impl AppData {
    /// Nothing shared.
    pub fn new() -> Self {
        Self::default()
    }

    /// Share `value`; a value of the same type given before is replaced.
    #[must_use]
    pub fn with<T: Send + Sync + 'static>(self, value: T) -> Self {
        self.with_arc(Arc::new(value))
    }

    /// Share the value behind `value`, which the application keeps a handle to as well; it is
    /// read back as `T`, not as `Arc<T>`.
    #[must_use]
    pub fn with_arc<T: Send + Sync + 'static>(mut self, value: Arc<T>) -> Self {
        self.values.insert(TypeId::of::<T>(), value);
        self
    }

    /// The shared value of type `T`.
    ///
    /// # Errors
    /// [`MissingAppData`] when none was given.
    pub fn get<T: Send + Sync + 'static>(&self) -> Result<Arc<T>, MissingAppData> {
        self.values
            .get(&TypeId::of::<T>())
            .and_then(|v| v.clone().downcast::<T>().ok())
            .ok_or(MissingAppData(type_name::<T>()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_per_type_and_a_missing_one_is_named() {
        struct Pool(&'static str);
        let shared = Arc::new(Pool("second"));
        let data = AppData::new()
            .with(Pool("first"))
            .with(7u32)
            .with_arc(shared.clone());
        assert_eq!(data.get::<Pool>().map(|p| p.0), Ok("second"));
        assert!(data.get::<Pool>().is_ok_and(|p| Arc::ptr_eq(&p, &shared)));
        assert_eq!(data.get::<u32>().map(|v| *v), Ok(7));
        let e = data.get::<String>().expect_err("no string was given");
        assert!(e.to_string().contains("alloc::string::String"), "{e}");
    }
}
