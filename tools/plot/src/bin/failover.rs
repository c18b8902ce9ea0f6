//! Draws `docs/plots/failover.png` from the timelines `cargo bench -p benchmarks --bench failover` writes: one
//! writer's acknowledged writes per 10 ms through one planned failover and one master crash,
//! with the fence on and off; writes the final master lacks in red; Sentinel's steps and the
//! pool's moves marked.
//!
//! `cargo bench -p benchmarks --bench failover && cargo run -p plot --bin failover`
//!
//! It reads `target/failover-timeline/*.json` and the DejaVu Sans font (Debian/Ubuntu:
//! `apt-get install fonts-dejavu-core`; or set `PLOT_FONT` to any TTF file).

use std::{error::Error, fs};

use ab_glyph::{FontVec, PxScale};
use image::{Rgb, RgbImage};
use imageproc::{
    drawing::{draw_filled_rect_mut, draw_line_segment_mut, draw_text_mut},
    rect::Rect,
};

/// The panels: (timeline file, title), row by row.
const PANELS: [(&str, &str); 4] = [
    ("planned-fence-on", "SENTINEL FAILOVER, fence on"),
    ("planned-fence-off", "SENTINEL FAILOVER, fence off"),
    ("crash-fence-on", "master SIGKILLed, fence on"),
    ("crash-fence-off", "master SIGKILLed, fence off"),
];
/// The marks: (key in the timeline, legend, color, dashed). The pool's marks are solid and
/// drawn first; Sentinel's are dashed, so that both show where they coincide.
const MARKS: [(&str, &str, [u8; 3], bool); 6] = [
    ("fence_up", "pool: fence up", [148, 103, 189], false),
    (
        "pool_moved",
        "pool: failover applied",
        [23, 190, 207],
        false,
    ),
    (
        "triggered",
        "failover triggered / master killed",
        [120, 120, 120],
        true,
    ),
    ("selected", "+selected-slave (leader)", [255, 127, 14], true),
    (
        "promoted",
        "replica answers ROLE master",
        [44, 160, 44],
        true,
    ),
    (
        "announced",
        "first +switch-master (any sentinel)",
        [0, 0, 0],
        true,
    ),
];
const KEPT: [u8; 3] = [31, 119, 180];
const LOST: [u8; 3] = [214, 39, 40];
const PANEL: (u32, u32) = (640, 330);
const MARGIN: (f32, f32, f32, f32) = (60.0, 20.0, 36.0, 46.0); // left, right, top, bottom

struct Timeline {
    title: &'static str,
    bucket_ms: f64,
    kept: Vec<f64>,
    lost: Vec<f64>,
    marks: serde_json::Value,
}

fn main() -> Result<(), Box<dyn Error>> {
    let font = plot::font()?;
    let mut timelines = Vec::new();
    for (file, title) in PANELS {
        let path = format!("target/failover-timeline/{file}.json");
        let text = fs::read_to_string(&path).map_err(|e| {
            format!("{path}: {e}; run `cargo bench -p benchmarks --bench failover` first")
        })?;
        let json: serde_json::Value = serde_json::from_str(&text)?;
        let numbers = |key: &str| -> Vec<f64> {
            json[key]
                .as_array()
                .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
                .unwrap_or_default()
        };
        timelines.push(Timeline {
            title,
            bucket_ms: json["bucket_ms"].as_f64().ok_or("no bucket_ms")?,
            kept: numbers("kept"),
            lost: numbers("lost"),
            marks: json["marks"].clone(),
        });
    }
    let top = timelines
        .iter()
        .flat_map(|t| t.kept.iter().zip(&t.lost).map(|(k, l)| k + l))
        .fold(0.0, f64::max)
        * 1.1;

    let legend_height = 20 + 22 * (MARKS.len() as u32 + 2) / 2;
    let mut img = RgbImage::from_pixel(
        PANEL.0 * 2,
        PANEL.1 * 2 + legend_height,
        Rgb([255, 255, 255]),
    );
    for row in 0..2 {
        // Both panels of a row share the time axis.
        let span = timelines[row * 2..row * 2 + 2]
            .iter()
            .map(|t| t.kept.len() as f64 * t.bucket_ms)
            .fold(0.0, f64::max);
        for column in 0..2 {
            let timeline = &timelines[row * 2 + column];
            let origin = (column as u32 * PANEL.0, row as u32 * PANEL.1);
            panel(&mut img, &font, origin, timeline, top, span);
        }
    }
    let mut legend: Vec<(&str, [u8; 3])> = vec![
        ("writes kept by the final master", KEPT),
        ("acknowledged writes lost", LOST),
    ];
    legend.extend(MARKS.iter().map(|(_, label, color, _)| (*label, *color)));
    for (i, (label, color)) in legend.iter().enumerate() {
        let x = 70 + (i as u32 % 2) * PANEL.0;
        let y = PANEL.1 * 2 + 10 + 22 * (i as u32 / 2);
        draw_filled_rect_mut(
            &mut img,
            Rect::at(x as i32, y as i32 + 3).of_size(24, 10),
            Rgb(*color),
        );
        draw_text_mut(
            &mut img,
            Rgb([0, 0, 0]),
            x as i32 + 34,
            y as i32,
            PxScale::from(15.0),
            &font,
            label,
        );
    }
    img.save("docs/plots/failover.png")?;
    println!("wrote docs/plots/failover.png");
    Ok(())
}

/// One panel: a bar per bucket (kept, then lost on top), a vertical line per mark.
fn panel(
    img: &mut RgbImage,
    font: &FontVec,
    (x0, y0): (u32, u32),
    timeline: &Timeline,
    top: f64,
    span_ms: f64,
) {
    let (left, right, upper, lower) = MARGIN;
    let (x0, y0) = (x0 as f32, y0 as f32);
    let plot_w = PANEL.0 as f32 - left - right;
    let plot_h = PANEL.1 as f32 - upper - lower;
    // Time 0 is the trigger; the timeline starts 500 ms before it.
    let start = timeline.marks["triggered"].as_f64().unwrap_or(0.0);
    let x_of = |ms: f64| x0 + left + plot_w * (ms / span_ms) as f32;
    let y_of = |v: f64| y0 + upper + plot_h * (1.0 - (v / top) as f32);
    let black = Rgb([0, 0, 0]);
    let grey = Rgb([225, 225, 225]);
    let small = PxScale::from(13.0);

    draw_text_mut(
        img,
        black,
        (x0 + left) as i32,
        y0 as i32 + 10,
        PxScale::from(17.0),
        font,
        timeline.title,
    );
    for step in 0..=4 {
        let v = top * f64::from(step) / 4.0;
        let y = y_of(v);
        draw_line_segment_mut(img, (x0 + left, y), (x0 + left + plot_w, y), grey);
        draw_text_mut(
            img,
            black,
            (x0 + 12.0) as i32,
            y as i32 - 7,
            small,
            font,
            &format!("{v:.0}"),
        );
    }
    // A tick every half second, labelled in seconds from the trigger.
    let mut tick = -(start / 500.0).floor() * 500.0;
    while start + tick <= span_ms {
        let x = x_of(start + tick);
        draw_line_segment_mut(img, (x, y0 + upper), (x, y0 + upper + plot_h), grey);
        draw_text_mut(
            img,
            black,
            x as i32 - 10,
            (y0 + upper + plot_h + 6.0) as i32,
            small,
            font,
            &format!("{:.1}", tick / 1000.0),
        );
        tick += 500.0;
    }
    draw_text_mut(
        img,
        black,
        (x0 + left + plot_w / 2.0 - 110.0) as i32,
        (y0 + PANEL.1 as f32 - 20.0) as i32,
        small,
        font,
        "seconds from the trigger; writes per 10 ms",
    );
    let width = (plot_w * (timeline.bucket_ms / span_ms) as f32).max(1.0);
    for (i, (kept, lost)) in timeline.kept.iter().zip(&timeline.lost).enumerate() {
        let x = x_of(i as f64 * timeline.bucket_ms);
        for (from, to, color) in [(0.0, *kept, KEPT), (*kept, kept + lost, LOST)] {
            if to > from {
                let (y_top, y_bottom) = (y_of(to), y_of(from));
                let height = (y_bottom - y_top).max(1.0);
                draw_filled_rect_mut(
                    img,
                    Rect::at(x as i32, y_top as i32).of_size(width.ceil() as u32, height as u32),
                    Rgb(color),
                );
            }
        }
    }
    for (key, _, color, dashed) in MARKS {
        let Some(ms) = timeline.marks[key].as_f64() else {
            continue;
        };
        let x = x_of(ms);
        let dash = if dashed { 6.0 } else { plot_h };
        let mut y = y0 + upper;
        while y < y0 + upper + plot_h {
            let end = (y + dash).min(y0 + upper + plot_h);
            for dx in [0.0, 1.0] {
                draw_line_segment_mut(img, (x + dx, y), (x + dx, end), Rgb(color));
            }
            y = end + dash * 0.6;
        }
    }
    draw_line_segment_mut(
        img,
        (x0 + left, y0 + upper),
        (x0 + left, y0 + upper + plot_h),
        black,
    );
    draw_line_segment_mut(
        img,
        (x0 + left, y0 + upper + plot_h),
        (x0 + left + plot_w, y0 + upper + plot_h),
        black,
    );
}
