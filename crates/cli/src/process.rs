//! What every long-running `rask` command does with its process: file limits and signals.

/// Raises the soft open-file limit to the hard one, as `dask scheduler` does: every peer
/// holds sockets (a zero worker holds three per fake worker).
pub fn raise_nofile() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(nofile = n, "open-file limit"),
        Err(e) => tracing::warn!("could not raise the open-file limit: {e}"),
    }
}

/// Resolves on SIGINT (Ctrl-C), SIGTERM or SIGHUP: a process started by `rask ssh` gets
/// SIGHUP when its SSH connection goes away.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("Received signal, shutting down");
}

/// Resolves when standard input reaches its end (never if `watch` is false). A plain
/// thread reads it: tokio's stdin would hold the runtime open at exit while the parent
/// still holds the pipe.
pub async fn stdin_closed(watch: bool) {
    if !watch {
        return std::future::pending().await;
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    let _ = rx.await;
    tracing::info!(
        "Standard input closed (by rask.Scheduler.close, or the Python process that started \
         rask ended), shutting down"
    );
}

/// The Python a command uses unless told (`--python`, `$RASK_PYTHON`): the one beside this
/// `rask` when pip installed both into the same environment's `bin/`, else `python3`.
pub fn default_python() -> String {
    let beside = std::env::current_exe().ok().and_then(|exe| {
        let dir = exe.parent()?;
        ["python3", "python"]
            .iter()
            .map(|name| dir.join(name))
            .find(|path| path.is_file())
    });
    match beside {
        Some(path) => path.display().to_string(),
        None => "python3".to_string(),
    }
}
