//! The shared tokio runtime every engine call runs on (one per process, started lazily).

use std::sync::OnceLock;

use tokio::runtime::Runtime;

/// The process-wide multi-threaded runtime.
pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("llmbench")
            .build()
            .unwrap_or_else(|e| panic!("cannot start the tokio runtime: {e}"))
    })
}
