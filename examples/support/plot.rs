//! What the plotting examples share: the font.

use std::{error::Error, fs};

use ab_glyph::FontVec;

/// The DejaVu Sans font, or the TTF file `PLOT_FONT` names.
pub(crate) fn font() -> Result<FontVec, Box<dyn Error>> {
    let path = std::env::var("PLOT_FONT")
        .unwrap_or_else(|_| "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf".into());
    let bytes = fs::read(&path).map_err(|e| {
        format!("cannot read the font {path} ({e}): install fonts-dejavu-core or set PLOT_FONT")
    })?;
    Ok(FontVec::try_from_vec(bytes)?)
}
