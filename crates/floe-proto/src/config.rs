//! The error every settings struct of Floe returns from `validate`.

/// A setting that cannot be used: fix the one it names.
///
/// Every settings struct (`RuntimeConfig`, `ClusterConfig`, `TransportConfig`, `StoreConfig`,
/// `ClientConfig`) has `validate(self) -> Result<Self, ConfigError>`, which hands the settings
/// back when they can be used and otherwise names the first wrong one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {setting}: {problem}")]
pub struct ConfigError {
    /// The setting, by its field name (`transport.max_frame` for a nested one).
    pub setting: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl ConfigError {
    /// `setting` is wrong because of `problem`.
    pub fn new(setting: &'static str, problem: impl Into<String>) -> Self {
        Self {
            setting,
            problem: problem.into(),
        }
    }

    /// Check `ok`; when it does not hold, `setting` is wrong because of `problem`.
    ///
    /// # Errors
    /// The error above when `ok` is false.
    pub fn check(ok: bool, setting: &'static str, problem: &str) -> Result<(), Self> {
        if ok {
            Ok(())
        } else {
            Err(Self::new(setting, problem))
        }
    }
}
