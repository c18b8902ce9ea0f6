//! Draws the benchmark figures from the benches' results, run from the repository's root:
//! `cargo run -p plot --bin checkout` (after `cargo bench --bench checkout`) and
//! `cargo run -p plot --bin failover` (after `cargo bench -p benchmarks --bench failover`). What both share:
//! the font.

use std::{error::Error, fs};

use ab_glyph::FontVec;

/// The DejaVu Sans font, or the TTF file `PLOT_FONT` names.
pub fn font() -> Result<FontVec, Box<dyn Error>> {
    let path = std::env::var("PLOT_FONT")
        .unwrap_or_else(|_| "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf".into());
    let bytes = fs::read(&path).map_err(|e| {
        format!("cannot read the font {path} ({e}): install fonts-dejavu-core or set PLOT_FONT")
    })?;
    Ok(FontVec::try_from_vec(bytes)?)
}
