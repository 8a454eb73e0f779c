//! The benchmark plot: grouped bar charts drawn as SVG by hand (no plotting dependency), turned into a PNG by
//! `rsvg-convert` (Debian `librsvg2-bin`).

use std::fmt::Write;
use std::path::Path;
use std::process::Command;

/// One chart: groups of bars (one bar per series), an optional dashed goal line.
pub struct Chart<'a> {
    pub title: &'a str,
    pub series: &'a [&'a str],
    pub groups: Vec<(String, Vec<f64>)>,
    pub goal: Option<(f64, &'a str)>,
}

const COLORS: [&str; 3] = ["#1f77b4", "#ff7f0e", "#2ca02c"];
const WIDTH: f64 = 480.0;
const HEIGHT: f64 = 300.0;

/// Charts two per row.
pub fn svg(charts: &[Chart<'_>]) -> String {
    let rows = charts.len().div_ceil(2);
    let (width, height) = (WIDTH * 2.0, HEIGHT * rows as f64);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>"
    );
    for (i, chart) in charts.iter().enumerate() {
        let (x, y) = ((i % 2) as f64 * WIDTH, (i / 2) as f64 * HEIGHT);
        draw(&mut out, chart, x, y);
    }
    out.push_str("</svg>\n");
    out
}

fn draw(out: &mut String, chart: &Chart<'_>, x0: f64, y0: f64) {
    let (left, top, plot_w, plot_h) = (x0 + 60.0, y0 + 40.0, WIDTH - 80.0, HEIGHT - 100.0);
    let max = chart
        .groups
        .iter()
        .flat_map(|(_, values)| values.iter().copied())
        .chain(chart.goal.map(|(g, _)| g))
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.15;
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\" font-size=\"15\" text-anchor=\"middle\">{}</text>",
        x0 + WIDTH / 2.0,
        y0 + 22.0,
        escape(chart.title)
    );
    let _ = write!(
        out,
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/>",
        top + plot_h,
        left + plot_w,
        top + plot_h
    );
    for tick in 0..=4 {
        let value = max * f64::from(tick) / 4.0;
        let y = top + plot_h - plot_h * f64::from(tick) / 4.0;
        let _ = write!(out, "<line x1=\"{left}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#ddd\"/>", left + plot_w);
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
            left - 4.0,
            y + 3.0,
            short(value)
        );
    }
    let groups = chart.groups.len().max(1) as f64;
    let group_w = plot_w / groups;
    let bar_w = (group_w * 0.8) / chart.series.len().max(1) as f64;
    for (g, (label, values)) in chart.groups.iter().enumerate() {
        let gx = left + group_w * g as f64 + group_w * 0.1;
        for (s, value) in values.iter().enumerate() {
            let h = plot_h * (value / max).clamp(0.0, 1.0);
            let (bx, by) = (gx + bar_w * s as f64, top + plot_h - h);
            let color = COLORS[s % COLORS.len()];
            let _ = write!(
                out,
                "<rect x=\"{bx:.1}\" y=\"{by:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{color}\"/>",
                bar_w * 0.95
            );
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"middle\">{}</text>",
                bx + bar_w / 2.0,
                by - 3.0,
                short(*value)
            );
        }
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            gx + group_w * 0.4,
            top + plot_h + 15.0,
            escape(label)
        );
    }
    if let Some((goal, label)) = chart.goal {
        let y = top + plot_h - plot_h * goal / max;
        let _ = write!(
            out,
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#d62728\" stroke-dasharray=\"5,4\"/>",
            left + plot_w
        );
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{:.1}\" font-size=\"10\" fill=\"#d62728\" text-anchor=\"end\">{}</text>",
            left + plot_w,
            y - 3.0,
            escape(label)
        );
    }
    for (s, name) in chart.series.iter().enumerate() {
        let (lx, ly) = (left + 110.0 * s as f64, y0 + HEIGHT - 25.0);
        let _ = write!(
            out,
            "<rect x=\"{lx}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/>",
            ly - 9.0,
            COLORS[s % COLORS.len()]
        );
        let _ = write!(out, "<text x=\"{}\" y=\"{ly}\" font-size=\"11\">{}</text>", lx + 14.0, escape(name));
    }
}

fn short(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{:.0}k", value / 1000.0)
    } else if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Converts `svg` to `png` (through a file next to it, removed afterwards); an error says what is missing.
pub fn write_png(svg: &str, png: &Path) -> anyhow::Result<()> {
    let source = png.with_extension("svg");
    std::fs::write(&source, svg)?;
    let status = Command::new("rsvg-convert").arg("-o").arg(png).arg(&source).status();
    match status {
        Ok(status) if status.success() => {
            // The PNG is what the report shows; the SVG was only its source.
            let _ = std::fs::remove_file(&source);
            Ok(())
        }
        other => anyhow::bail!("rsvg-convert (Debian librsvg2-bin) could not draw {}: {other:?}", png.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_bar_per_value_and_the_goal() {
        let chart = Chart {
            title: "a < b",
            series: &["berth", "native"],
            groups: vec![("10".into(), vec![1.0, 2.0]), ("1k".into(), vec![3.0, 4.0])],
            goal: Some((0.95, "goal")),
        };
        let svg = svg(&[chart]);
        assert_eq!(svg.matches("<rect x=").count(), 4 + 2, "four bars and two legend keys");
        assert!(svg.contains("a &lt; b") && svg.contains("stroke-dasharray"));
    }
}
