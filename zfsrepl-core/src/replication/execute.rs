//! Running a replication plan: each dataset's steps in order, parents
//! before children, every step a `zfs send` spliced into a `zfs receive`
//! (`stream::Pipeline`). A dataset that fails or has a conflict is reported
//! and its descendants are skipped; the others continue.
//!
//! This first executor places no holds and takes no sync snapshot of its
//! own (the replication issue adds them); it never receives with `-F`, and
//! rolls a target back only where the plan says so (`force_rollback`, and
//! then only over snapshots zfsrepl owns).

use serde::Serialize;

use super::plan::{Action, ReplicationPlan};
use crate::name::DatasetName;
use crate::stream::{CancelToken, CopyOptions, Pipeline, Progress};
use crate::zfs::{Capabilities, RecvSpec, SendFlags, SendSpec, ZfsStream, ZfsWrite};

/// How one dataset went.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetOutcome {
    /// The source dataset.
    pub source: DatasetName,
    /// The target dataset.
    pub target: DatasetName,
    /// Steps completed.
    pub steps_done: usize,
    /// Bytes moved.
    pub bytes: u64,
    /// `None` when everything asked was done; otherwise why not.
    pub error: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExecReport {
    /// One outcome per planned dataset.
    pub datasets: Vec<DatasetOutcome>,
}

impl ExecReport {
    /// How many datasets failed or were skipped.
    #[must_use]
    pub fn failures(&self) -> usize {
        self.datasets.iter().filter(|d| d.error.is_some()).count()
    }

    /// Total bytes moved.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.datasets.iter().map(|d| d.bytes).sum()
    }
}

/// Runs `plan`: `src` sends, `dst` receives (unmounted where it can).
pub fn execute<S, D>(
    src: &S,
    dst: &D,
    dst_caps: &Capabilities,
    plan: &ReplicationPlan,
    opts: &CopyOptions,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> ExecReport
where
    S: ZfsStream + ?Sized,
    D: ZfsStream + ZfsWrite + ?Sized,
{
    let mut report = ExecReport::default();
    let mut failed: Vec<DatasetName> = Vec::new();
    for dp in &plan.datasets {
        let mut out = DatasetOutcome {
            source: dp.source.clone(),
            target: dp.target.clone(),
            steps_done: 0,
            bytes: 0,
            error: None,
        };
        if let Some(parent) = failed.iter().find(|f| dp.source.is_within(f)) {
            out.error = Some(format!("skipped: {parent} failed"));
            failed.push(dp.source.clone());
            report.datasets.push(out);
            continue;
        }
        let result = (|| -> Result<(), String> {
            if let Action::Conflict(c) = &dp.action {
                return Err(c.to_string());
            }
            if dp.discard_partial_receive {
                dst.receive_abort(&dp.target).map_err(|e| e.to_string())?;
            }
            if let Some(rb) = &dp.rollback {
                dst.rollback(&rb.to, true).map_err(|e| e.to_string())?;
            }
            for step in dp.steps() {
                if cancel.is_cancelled() {
                    return Err("cancelled".into());
                }
                let send = src
                    .send(&SendSpec {
                        source: step.send_source(),
                        flags: SendFlags::default(),
                    })
                    .map_err(|e| e.to_string())?;
                let recv = match dst.receive(&RecvSpec {
                    target: Some(dp.target.clone()),
                    unmounted: dst_caps.recv_unmounted,
                    resumable: dst_caps.resumable,
                    ..RecvSpec::default()
                }) {
                    Ok(r) => r,
                    Err(e) => {
                        crate::zfs::SendStream::abort(send);
                        return Err(e.to_string());
                    }
                };
                let stats = Pipeline::run(send, recv, opts, progress, cancel)
                    .into_result()
                    .map_err(|e| format!("{step}: {e}"))?;
                out.bytes += stats.bytes;
                out.steps_done += 1;
            }
            Ok(())
        })();
        if let Err(e) = result {
            out.error = Some(e);
            failed.push(dp.source.clone());
        }
        report.datasets.push(out);
    }
    report
}
