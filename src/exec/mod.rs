//! Remote execution: playbook steps, their rendering (strict, shell-quoted
//! templates), and the [`Transport`] seam that runs commands and moves
//! files on one host, over SSH ([`SshTransport`], which also streams a
//! long-running command's output line by line: [`OutputStream`]) or on the
//! scaler host ([`LocalTransport`]).
//!
//! ```text
//! fleet::Fleet (config + recorded nodes) + selector -> target::resolve -> [HostSpec]
//! Playbook + vars -> runner::Runner (runner/compile: steps checked, params bound)
//!   runner/batch: serial batches, forks, max_fail_percentage
//!   runner/host: per host, steps in order -> template rendering -> Transport (ssh pool | local)
//!     (runner/prompt: `prompt` steps; runner/transfer: `put`/`get`, diffs in check mode) -> StepResult
//!   -> RunResult (per host, per step, overall status, exit code)
//! ```
//!
//! Must not depend on: the store (callers read the nodes and hand them in
//! through a [`crate::fleet::Fleet`]),
//! CLI printing (progress goes through the [`Progress`] observer).

mod error;
mod local;
mod result;
mod runner;
mod ssh;
mod stream;
pub mod target;
mod transport;

pub use error::{ExecError, HostKeyOffer};
pub use local::LocalTransport;
pub use result::{exit_code_for, HostResult, RunResult, Status, StepResult};
pub use runner::{NoProgress, NonInteractive, Progress, Prompter, RunOptions, Runner, TerminalPrompter};
pub use ssh::{SshParams, SshTransport};
pub use stream::{OutputStream, StreamEvent};
pub use target::{node_ssh_params, resolve, HostSpec, SshOverrides, TargetSelection};
pub use transport::{wrap_command, CommandOutput, CommandRequest, PromptAnswer, PutOptions, Transport};
