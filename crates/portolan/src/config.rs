//! Configuration: `portolan.toml`, overridden by `PORTOLAN_*` environment variables, overridden by
//! flags (clap reads both the flags and the variables). Unknown keys in the file are errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// The file read from the working directory when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "portolan.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data: Option<PathBuf>,
    pub body_limit: Option<usize>,
    pub log: Option<String>,
    pub demo: Option<bool>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Configuration file [default: ./portolan.toml if it exists]
    #[arg(long, env = "PORTOLAN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7700]
    #[arg(long, env = "PORTOLAN_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory of the embedded database [default: ./portolan-data]
    #[arg(long, env = "PORTOLAN_DATA")]
    pub data: Option<PathBuf>,
    /// Largest request body in bytes [default: 1048576]
    #[arg(long, env = "PORTOLAN_BODY_LIMIT")]
    pub body_limit: Option<usize>,
    /// Log filter, e.g. `info` or `portolan_server=debug` [default: info]
    #[arg(long, env = "PORTOLAN_LOG")]
    pub log: Option<String>,
    /// Load the demo catalog (idempotent: existing entries are left alone)
    #[arg(long, env = "PORTOLAN_DEMO")]
    pub demo: bool,
}

/// The effective settings of `portolan serve`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data: PathBuf,
    pub body_limit: usize,
    pub log: String,
    pub demo: bool,
}

impl ServeArgs {
    pub fn resolve(self) -> anyhow::Result<ServeConfig> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => read_file(Path::new(DEFAULT_CONFIG_FILE))?,
            None => FileConfig::default(),
        };
        let body_limit = self.body_limit.or(file.body_limit).unwrap_or(1024 * 1024);
        if body_limit < 1024 {
            bail!("body_limit must be at least 1024 bytes");
        }
        Ok(ServeConfig {
            listen: self.listen.or(file.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7700))),
            data: self.data.or(file.data).unwrap_or_else(|| PathBuf::from("portolan-data")),
            body_limit,
            log: self.log.or(file.log).unwrap_or_else(|| "info".into()),
            demo: self.demo || file.demo.unwrap_or(false),
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid configuration in {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ServeArgs {
        ServeArgs { config: None, listen: None, data: None, body_limit: None, log: None, demo: false }
    }

    #[test]
    fn flags_override_the_file_and_unknown_keys_are_errors() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("portolan.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\ndata = \"/tmp/x\"\nbody_limit = 2048\n")?;
        let config = ServeArgs { config: Some(path.clone()), data: Some("/tmp/y".into()), ..args() }.resolve()?;
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 9000)));
        assert_eq!(config.data, PathBuf::from("/tmp/y"));
        assert_eq!(config.body_limit, 2048);

        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\nlisten_port = 3\n")?;
        let err = ServeArgs { config: Some(path), ..args() }.resolve().expect_err("unknown key");
        assert!(format!("{err:#}").contains("listen_port"), "{err:#}");
        Ok(())
    }
}
