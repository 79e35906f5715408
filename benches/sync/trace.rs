//! Where a push's time goes, measured rather than argued: git's own trace2
//! timings of every git process (the scripts', and the server's
//! `receive-pack` with its connectivity check), and graft's sync phases
//! from its `tracing` events.
//!
//! The fake git server runs `git http-backend` with a cleared environment
//! but the benchmark's `PATH`, so `GIT_TRACE2_EVENT` cannot be handed to it
//! directly: the first `git` on `PATH` is a link to git, swapped for a
//! script that sets the variable only while a traced run is on. The timed
//! runs pay nothing for it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The `git` the benchmark and its server find first on `PATH`.
pub struct GitSwitch {
    bin: PathBuf,
    real: PathBuf,
}

impl GitSwitch {
    /// Puts a plain link to git in `folder` first on `PATH`. Call it before
    /// any other thread exists.
    pub fn install(folder: &Path) -> GitSwitch {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let real = std::env::split_paths(&path)
            .map(|dir| dir.join("git"))
            .find(|git| git.is_file())
            .expect("git on PATH");
        let bin = folder.join("bin");
        std::fs::create_dir_all(&bin).expect("bin folder");
        let switch = GitSwitch { bin, real };
        switch.off();
        let mut dirs = vec![switch.bin.clone()];
        dirs.extend(std::env::split_paths(&path));
        let joined = std::env::join_paths(dirs).expect("PATH");
        // SAFETY: called from `main` before the runtime starts any thread.
        unsafe { std::env::set_var("PATH", joined) };
        switch
    }

    fn replace(&self, make: impl FnOnce(&Path)) {
        let next = self.bin.join("git.next");
        let _ = std::fs::remove_file(&next);
        make(&next);
        std::fs::rename(&next, self.bin.join("git")).expect("swap git");
    }

    /// git itself.
    pub fn off(&self) {
        self.replace(|next| std::os::unix::fs::symlink(&self.real, next).expect("link git"));
    }

    /// git writing one trace2 event file per process into `folder`.
    pub fn trace_into(&self, folder: &Path) {
        std::fs::create_dir_all(folder).expect("trace folder");
        let script = format!(
            "#!/bin/sh\nGIT_TRACE2_EVENT='{}'\nexport GIT_TRACE2_EVENT\nexec '{}' \"$@\"\n",
            folder.display(),
            self.real.display()
        );
        self.replace(|next| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(next, script).expect("git script");
            std::fs::set_permissions(next, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        });
    }
}

/// Milliseconds spent by the git processes traced into `folder`, summed by
/// their place in the process tree (`push`, `push/pack-objects`,
/// `http-backend/receive-pack`, `http-backend/receive-pack/rev-list`...).
pub fn git_times(folder: &Path) -> BTreeMap<String, f64> {
    let mut times = BTreeMap::new();
    for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let (mut place, mut seconds) = (None, None);
        for line in text.lines() {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            match event["event"].as_str() {
                Some("cmd_name") if place.is_none() => {
                    place = event["hierarchy"].as_str().map(str::to_string);
                }
                Some("atexit") => seconds = event["t_abs"].as_f64(),
                _ => {}
            }
        }
        if let (Some(place), Some(seconds)) = (place, seconds) {
            *times.entry(place).or_insert(0.0) += seconds * 1000.0;
        }
    }
    times
}

/// graft's `sync phase done` and `push sent` events, as (name, ms).
static PHASES: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());

/// Takes what graft logged since the last call.
pub fn take_phases() -> Vec<(String, u64)> {
    std::mem::take(&mut *PHASES.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Records graft's phase durations (debug events of target `graft`).
pub struct PhaseLayer;

#[derive(Default)]
struct Fields {
    message: String,
    phase: Option<String>,
    numbers: Vec<(&'static str, u64)>,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "phase" {
            self.phase = Some(value.to_string());
        }
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.numbers.push((field.name(), value));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for PhaseLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let number = |name: &str| {
            fields
                .numbers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
        };
        let mut phases = PHASES.lock().unwrap_or_else(|p| p.into_inner());
        match (fields.message.as_str(), &fields.phase) {
            ("sync phase done", Some(phase)) => {
                if let Some(ms) = number("elapsed_ms") {
                    phases.push((phase.clone(), ms));
                }
            }
            ("push sent", _) => {
                for name in ["advertised_ms", "pack_ms", "receive_ms"] {
                    if let Some(ms) = number(name) {
                        phases.push((format!("push_{}", name.trim_end_matches("_ms")), ms));
                    }
                }
            }
            _ => {}
        }
    }
}

/// The median of each name's values over the runs (a name missing from a
/// run counts as 0 there).
pub fn medians(runs: &[BTreeMap<String, f64>]) -> BTreeMap<String, f64> {
    let mut names: Vec<&String> = runs.iter().flat_map(|r| r.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let mut values: Vec<f64> = runs
                .iter()
                .map(|r| r.get(name).copied().unwrap_or(0.0))
                .collect();
            values.sort_by(f64::total_cmp);
            (name.clone(), values[values.len() / 2])
        })
        .collect()
}
