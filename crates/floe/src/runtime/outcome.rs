//! What a commit's result means for the caller and for the activation that proposed it. Pure:
//! the activation applies what [`settle`] decides.

use raft_store::{CommitResult, Outcome};

use crate::error::CallFailure;
use crate::proposer::ProposeError;

/// The answer a call gets.
pub(crate) type CallResult = Result<Vec<u8>, CallFailure>;

/// The answer a recorded outcome gives.
pub(crate) fn answer(outcome: Outcome) -> CallResult {
    match outcome {
        Outcome::Reply(r) => Ok(r),
        Outcome::Rejected { error, display } => Err(CallFailure::Rejected { error, display }),
    }
}

/// What becomes of a proposed commit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Settlement {
    /// Applied at `version`: the activation's memory is the committed state; give the answer.
    Committed { version: u64, answer: CallResult },
    /// Not applied, and the activation is still current: restore the state from before the
    /// call and give the failure.
    Undo(CallFailure),
    /// Applied before, by an earlier attempt of the same request: load the committed state and
    /// give the original answer.
    Reload(CallResult),
    /// The activation can no longer be trusted (fenced, overtaken, or the commit's fate is
    /// unknown): drop it, so that the next call loads what was committed, and give the failure.
    Drop {
        /// What the caller is told.
        failure: CallFailure,
        /// Whether a newer owner fenced it (counted in the metrics).
        fenced: bool,
    },
}

/// Decide what the result of proposing a commit (carrying `outcome` as the call's answer)
/// means. Every path where the commit may have applied without this node knowing its answer
/// gives an unknown outcome ([`CallFailure::outcome_known`] is false), never a definite one.
pub(crate) fn settle(result: Result<CommitResult, ProposeError>, outcome: Outcome) -> Settlement {
    match result {
        Ok(CommitResult::Committed { version }) => Settlement::Committed {
            version,
            answer: answer(outcome),
        },
        // Its session expired, or its caller had let it go: it may have been applied before,
        // so it is not applied again, and its outcome cannot be told.
        Ok(CommitResult::Expired) => Settlement::Undo(CallFailure::Expired),
        Ok(CommitResult::SessionFull) => Settlement::Undo(CallFailure::Unavailable(
            "the caller's session holds too many unacknowledged outcomes; back off".into(),
        )),
        // Another write of this epoch applied first (a predecessor's commit whose outcome was
        // unknown): ours was not applied, and the memory is behind. Reload; the caller retries.
        Ok(CommitResult::Conflict { .. }) => Settlement::Drop {
            failure: CallFailure::Unavailable("a concurrent write applied first; retry".into()),
            fenced: false,
        },
        Ok(CommitResult::Duplicate {
            outcome: original, ..
        }) => Settlement::Reload(answer(original)),
        Ok(CommitResult::StaleEpoch { current }) => Settlement::Drop {
            failure: CallFailure::NotOwner(current.map(|p| p.node)),
            fenced: true,
        },
        Err(ProposeError::Invalid(why)) => Settlement::Undo(CallFailure::BadRequest(why)),
        // Not appended: the state held is not committed; reload on the next call.
        Err(ProposeError::NotLeader(leader)) => Settlement::Drop {
            failure: CallFailure::Unavailable(format!("no leader to commit (leader: {leader:?})")),
            fenced: false,
        },
        // The commit may or may not have happened.
        Err(ProposeError::Unknown(_)) => Settlement::Drop {
            failure: CallFailure::Timeout,
            fenced: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_store::Placement;

    fn reply() -> Outcome {
        Outcome::Reply(vec![7])
    }

    #[test]
    fn a_commit_releases_the_calls_own_answer() {
        let s = settle(Ok(CommitResult::Committed { version: 4 }), reply());
        assert_eq!(
            s,
            Settlement::Committed {
                version: 4,
                answer: Ok(vec![7])
            }
        );
        let rejected = Outcome::Rejected {
            error: vec![1],
            display: "no".into(),
        };
        let s = settle(Ok(CommitResult::Committed { version: 5 }), rejected);
        assert!(matches!(
            s,
            Settlement::Committed {
                answer: Err(CallFailure::Rejected { .. }),
                ..
            }
        ));
    }

    #[test]
    fn a_duplicate_answers_with_the_original_outcome_not_the_rerun() {
        let s = settle(
            Ok(CommitResult::Duplicate {
                version: 3,
                outcome: Outcome::Reply(vec![1]),
            }),
            reply(),
        );
        assert_eq!(s, Settlement::Reload(Ok(vec![1])));
    }

    #[test]
    fn an_unknown_fate_never_gives_a_definite_answer() {
        for result in [
            Err(ProposeError::Unknown("connection lost".into())),
            Ok(CommitResult::Expired),
        ] {
            let failure = match settle(result, reply()) {
                Settlement::Drop { failure, .. } | Settlement::Undo(failure) => failure,
                other => panic!("{other:?}"),
            };
            assert!(!failure.outcome_known(), "{failure:?}");
        }
    }

    #[test]
    fn fencing_and_overtaking_drop_the_activation() {
        let current = Placement {
            node: 2,
            incarnation: 1,
            epoch: 9,
        };
        assert_eq!(
            settle(
                Ok(CommitResult::StaleEpoch {
                    current: Some(current)
                }),
                reply()
            ),
            Settlement::Drop {
                failure: CallFailure::NotOwner(Some(2)),
                fenced: true
            }
        );
        assert!(matches!(
            settle(Ok(CommitResult::Conflict { version: 8 }), reply()),
            Settlement::Drop { fenced: false, .. }
        ));
        assert!(matches!(
            settle(Err(ProposeError::NotLeader(None)), reply()),
            Settlement::Drop { fenced: false, .. }
        ));
    }

    #[test]
    fn refusals_that_applied_nothing_undo_and_keep_the_activation() {
        assert!(matches!(
            settle(Ok(CommitResult::SessionFull), reply()),
            Settlement::Undo(CallFailure::Unavailable(_))
        ));
        assert_eq!(
            settle(Err(ProposeError::Invalid("bad".into())), reply()),
            Settlement::Undo(CallFailure::BadRequest("bad".into()))
        );
    }
}
