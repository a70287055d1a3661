//! Retention: which snapshots `vault forget` keeps (placeholder until the
//! planner lands; only duration parsing lives here for now).

use crate::error::{Error, Result};

/// Parses `30s`, `15m`, `24h`, `7d`, `2w`.
pub fn parse_duration(s: &str) -> Result<chrono::Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: i64 = n
        .parse()
        .map_err(|_| Error::Usage(format!("{s:?} is not a duration like 24h or 7d")))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(Error::Usage(format!("{s:?}: unit must be s, m, h, d or w"))),
    };
    Ok(chrono::Duration::seconds(n * secs))
}
