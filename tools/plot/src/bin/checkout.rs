//! Draws `docs/plots/checkout.png` from the results of `cargo bench --bench checkout`: operations
//! per second against threads, one line per contender, one panel per pool size.
//!
//! `cargo bench --bench checkout && cargo run -p plot --bin checkout`
//!
//! It reads criterion's estimates under `target/criterion/` and the DejaVu Sans font
//! (Debian/Ubuntu: `apt-get install fonts-dejavu-core`; or set `PLOT_FONT` to any TTF file).

use std::{collections::BTreeMap, error::Error, fs, path::Path};

use ab_glyph::{FontVec, PxScale};
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_circle_mut, draw_line_segment_mut, draw_text_mut};

const CONTENDERS: [(&str, &str, [u8; 3]); 5] = [
    (
        "sentinel-pool_ping-role",
        "this crate, PING+ROLE (default)",
        [31, 119, 180],
    ),
    (
        "sentinel-pool_fast",
        "this crate, fast validation",
        [44, 160, 44],
    ),
    (
        "plain-r2d2_ping",
        "plain r2d2 Pool<Client>, PING",
        [127, 127, 127],
    ),
    (
        "plain-r2d2_none",
        "plain r2d2 Pool<Client>, no check",
        [188, 189, 34],
    ),
    (
        "locked-sentinel-client_ping",
        "r2d2 Pool<LockedSentinelClient>",
        [214, 39, 40],
    ),
];
const THREADS: [u32; 5] = [1, 2, 4, 8, 16];
const POOLS: [u32; 2] = [8, 16];
const PANEL: (u32, u32) = (620, 440);
const MARGIN: (f32, f32, f32, f32) = (70.0, 20.0, 40.0, 50.0); // left, right, top, bottom

fn main() -> Result<(), Box<dyn Error>> {
    let font = plot::font()?;

    // ops/s by (pool, contender, threads), from criterion's mean time per operation.
    let mut ops: BTreeMap<(u32, &str, u32), f64> = BTreeMap::new();
    for pool in POOLS {
        for (dir, _, _) in CONTENDERS {
            for threads in THREADS {
                let path = format!(
                    "target/criterion/checkout+set_pool-{pool}/{dir}/{threads}/new/estimates.json"
                );
                if !Path::new(&path).exists() {
                    return Err(format!(
                        "{path} is missing: run `cargo bench --bench checkout` first"
                    )
                    .into());
                }
                let estimates: serde_json::Value =
                    serde_json::from_str(&fs::read_to_string(&path)?)?;
                let nanos = estimates["mean"]["point_estimate"]
                    .as_f64()
                    .ok_or("no mean in estimates")?;
                ops.insert((pool, dir, threads), 1e9 / nanos);
            }
        }
    }
    let top = ops.values().cloned().fold(0.0, f64::max) * 1.1;

    let legend_height = 30 + 22 * CONTENDERS.len() as u32;
    let mut img = RgbImage::from_pixel(PANEL.0 * 2, PANEL.1 + legend_height, Rgb([255, 255, 255]));
    for (i, pool) in POOLS.iter().enumerate() {
        panel(&mut img, &font, i as u32 * PANEL.0, *pool, &ops, top);
    }
    for (i, (_, label, color)) in CONTENDERS.iter().enumerate() {
        let y = (PANEL.1 + 15 + 22 * i as u32) as f32;
        draw_line_segment_mut(&mut img, (80.0, y + 8.0), (120.0, y + 8.0), Rgb(*color));
        draw_filled_circle_mut(&mut img, (100, y as i32 + 8), 4, Rgb(*color));
        draw_text_mut(
            &mut img,
            Rgb([0, 0, 0]),
            130,
            y as i32,
            PxScale::from(16.0),
            &font,
            label,
        );
    }
    img.save("docs/plots/checkout.png")?;
    println!("wrote docs/plots/checkout.png");
    Ok(())
}

/// One panel: axes, grid, one line per contender.
fn panel(
    img: &mut RgbImage,
    font: &FontVec,
    x0: u32,
    pool: u32,
    ops: &BTreeMap<(u32, &str, u32), f64>,
    top: f64,
) {
    let (left, right, upper, lower) = MARGIN;
    let (x0, w, h) = (x0 as f32, PANEL.0 as f32, PANEL.1 as f32);
    let plot_w = w - left - right;
    let plot_h = h - upper - lower;
    let x_of = |i: usize| x0 + left + plot_w * i as f32 / (THREADS.len() - 1) as f32;
    let y_of = |v: f64| upper + plot_h * (1.0 - (v / top) as f32);
    let black = Rgb([0, 0, 0]);
    let grey = Rgb([225, 225, 225]);
    let small = PxScale::from(14.0);

    let title = format!("checkout + SET, pool of {pool}");
    draw_text_mut(
        img,
        black,
        (x0 + left) as i32,
        10,
        PxScale::from(18.0),
        font,
        &title,
    );
    for step in 0..=5 {
        let v = top * step as f64 / 5.0;
        let y = y_of(v);
        draw_line_segment_mut(img, (x0 + left, y), (x0 + w - right, y), grey);
        let label = format!("{:.0}k", v / 1e3);
        draw_text_mut(
            img,
            black,
            (x0 + 20.0) as i32,
            y as i32 - 8,
            small,
            font,
            &label,
        );
    }
    for (i, threads) in THREADS.iter().enumerate() {
        let x = x_of(i);
        draw_line_segment_mut(img, (x, upper), (x, upper + plot_h), grey);
        draw_text_mut(
            img,
            black,
            x as i32 - 5,
            (upper + plot_h + 8.0) as i32,
            small,
            font,
            &threads.to_string(),
        );
    }
    draw_text_mut(
        img,
        black,
        (x0 + left + plot_w / 2.0 - 30.0) as i32,
        (h - 22.0) as i32,
        small,
        font,
        "threads",
    );
    draw_text_mut(
        img,
        black,
        (x0 + 8.0) as i32,
        (upper - 28.0) as i32,
        small,
        font,
        "ops/s",
    );
    draw_line_segment_mut(img, (x0 + left, upper), (x0 + left, upper + plot_h), black);
    draw_line_segment_mut(
        img,
        (x0 + left, upper + plot_h),
        (x0 + w - right, upper + plot_h),
        black,
    );

    for (dir, _, color) in CONTENDERS {
        let points: Vec<(f32, f32)> = THREADS
            .iter()
            .enumerate()
            .map(|(i, t)| (x_of(i), y_of(ops[&(pool, dir, *t)])))
            .collect();
        for pair in points.windows(2) {
            draw_line_segment_mut(img, pair[0], pair[1], Rgb(color));
        }
        for (x, y) in points {
            draw_filled_circle_mut(img, (x as i32, y as i32), 4, Rgb(color));
        }
    }
}
