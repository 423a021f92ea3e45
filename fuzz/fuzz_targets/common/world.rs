//! The app the whole-entry targets drive: the local configuration in dry run (HighLevel is
//! never called), built once per fuzzing process.

use std::sync::OnceLock;

use ghl_csv_finalize::{App, Config};

pub struct World {
    pub runtime: tokio::runtime::Runtime,
    pub app: App,
}

/// The process's app, built on first use with `configure` applied to the dry-run config.
pub fn world(configure: impl FnOnce(&mut Config)) -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut config = Config::local("pit-fuzz", "http://127.0.0.1:9").unwrap();
        config.dry_run = true;
        configure(&mut config);
        let app = runtime.block_on(App::build(config)).unwrap();
        World { runtime, app }
    })
}
