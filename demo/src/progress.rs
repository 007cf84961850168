//! Progress on stderr: a spinner with the elapsed time while a step runs.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Prints a spinner with the elapsed time while a step runs (when stderr is a terminal), and a
/// check mark with a line of figures when it is done.
pub(crate) struct Spinner {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Spinner {
    pub(crate) fn start(label: &str, enabled: bool) -> Spinner {
        if !enabled || !std::io::stderr().is_terminal() {
            eprintln!("  {label} …");
            return Spinner {
                stop: None,
                task: None,
            };
        }
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let label = label.to_owned();
        let task = tokio::spawn(async move {
            let frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
            let started = Instant::now();
            let mut i = 0;
            loop {
                eprint!(
                    "\r  {} {label}  {:.1} s ",
                    frames[i % frames.len()],
                    started.elapsed().as_secs_f64()
                );
                i += 1;
                tokio::select! {
                    _ = &mut rx => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
            eprint!("\r\x1b[2K");
        });
        Spinner {
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub(crate) async fn done(mut self, line: &str) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        eprintln!("  ✓ {line}");
    }
}

/// Bytes as MiB.
pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
