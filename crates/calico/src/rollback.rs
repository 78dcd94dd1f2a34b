//! The one undo point of an ADD: every step that changes the node records how to undo itself,
//! and a journal dropped without [`Journal::commit`] undoes the record in reverse order. So
//! `add` reads as a straight line of `?`, and a new step needs one `record` call, not another
//! hand-placed cleanup on every later error path.

/// A change ADD made that a failure must take back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The IPAM plugin handed out addresses (taken back with an IPAM DEL).
    Allocated,
    /// The pod interface and its host veth exist, possibly only in part. The veth is removed
    /// only while it still carries `owner` (the link alias ADD gave it), so an undo never
    /// touches another workload's interface.
    PodInterface { host_veth: String, owner: String },
}

/// Carries out one undo; failures are logged by the implementation, never returned (the ADD's
/// own error is the one the runtime must see).
pub trait Undo {
    fn undo(&self, step: &Step);
}

/// The steps done so far, undone on drop unless committed.
pub struct Journal<'u> {
    undo: &'u dyn Undo,
    done: Vec<Step>,
}

impl<'u> Journal<'u> {
    pub fn new(undo: &'u dyn Undo) -> Self {
        Journal {
            undo,
            done: Vec::new(),
        }
    }

    /// Records `step` as done. Record before a step that can fail half way (the undo of a
    /// partial step must run too); undos are therefore idempotent.
    pub fn record(&mut self, step: Step) {
        self.done.push(step);
    }

    /// The ADD succeeded: nothing is undone.
    pub fn commit(mut self) {
        self.done.clear();
    }
}

impl Drop for Journal<'_> {
    fn drop(&mut self) {
        // Reverse order: the interfaces go before the addresses they carried, so an address is
        // never free for another pod while this one still answers for it.
        for step in self.done.drain(..).rev() {
            log::info!("rolling back {step:?}");
            self.undo.undo(&step);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Recorder(RefCell<Vec<Step>>);

    impl Undo for Recorder {
        fn undo(&self, step: &Step) {
            self.0.borrow_mut().push(step.clone());
        }
    }

    fn veth() -> Step {
        Step::PodInterface {
            host_veth: "cali0123456789a".into(),
            owner: "owner=cni:0123456789abcdef".into(),
        }
    }

    /// Runs an ADD-shaped sequence that fails after `fail_after` steps and returns what was undone.
    fn run(fail_after: usize) -> Vec<Step> {
        let rec = Recorder::default();
        let steps = [Step::Allocated, veth()];
        let outcome = (|| -> Result<(), ()> {
            let mut journal = Journal::new(&rec);
            for step in steps.iter().take(fail_after) {
                journal.record(step.clone());
            }
            if fail_after < steps.len() + 1 {
                return Err(());
            }
            journal.commit();
            Ok(())
        })();
        assert_eq!(outcome.is_ok(), fail_after > steps.len());
        rec.0.into_inner()
    }

    #[test]
    fn each_failure_point_undoes_exactly_what_was_done() {
        assert_eq!(run(0), vec![], "failure before any change: nothing to undo");
        assert_eq!(run(1), vec![Step::Allocated], "after IPAM: release only");
        assert_eq!(
            run(2),
            vec![veth(), Step::Allocated],
            "after the dataplane: interface first, then the addresses"
        );
    }

    #[test]
    fn a_committed_add_undoes_nothing() {
        assert_eq!(run(3), vec![]);
    }
}
