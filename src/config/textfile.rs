//! Reading the text files an operator hands us (configuration, flows) with
//! a size cap: `voxgate validate /dev/zero` must not read until memory runs
//! out, and a flow or config file is never legitimately megabytes long.

use std::io::Read;
use std::path::Path;

/// The most a configuration file may hold: 1 MiB.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The most a flow file may hold: 8 MiB (tens of thousands of steps).
pub const MAX_FLOW_BYTES: u64 = 8 << 20;

/// The UTF-8 text of `path`, refusing a file longer than `limit` bytes
/// (reading stops just past the limit; the error says what the limit is and
/// that it is one).
pub fn read_capped(path: &Path, limit: u64) -> std::io::Result<String> {
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    file.take(limit.saturating_add(1))
        .read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "larger than {} (the size limit for this kind of file; nothing beyond it was read)",
                human(limit)
            ),
        ));
    }
    Ok(text)
}

/// `1 MiB`, `64 KiB`, `10 bytes`.
fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_over_the_limit_are_refused_without_reading_them_whole() {
        let dir = std::env::temp_dir().join(format!("voxgate-capped-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f.yaml");
        std::fs::write(&p, "a: 1\n").unwrap();
        assert_eq!(read_capped(&p, 5).unwrap(), "a: 1\n");
        let e = read_capped(&p, 4).unwrap_err().to_string();
        assert!(
            e.contains("larger than 4 bytes") && e.contains("limit"),
            "{e}"
        );
        // An endless file stops at the cap.
        let e = read_capped(Path::new("/dev/zero"), MAX_CONFIG_BYTES).unwrap_err();
        assert!(e.to_string().contains("1 MiB"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
