//! Small self-contained SVG charts (no fonts to ship, viewable in any browser or on GitHub).

use std::fmt::Write;

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 360.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLORS: [&str; 5] = ["#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#9467bd"];

/// A named series of (x, y) points.
pub struct Series<'a> {
    /// Legend text.
    pub name: &'a str,
    /// Points, x ascending.
    pub points: Vec<(f64, f64)>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn frame(out: &mut String, title: &str, x_label: &str, y_label: &str, x_max: f64, y_max: f64) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>
<text x="{}" y="{}" text-anchor="middle">{}</text>
<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>
"#,
        WIDTH / 2.0,
        escape(title),
        LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        HEIGHT - 10.0,
        escape(x_label),
        TOP + (HEIGHT - TOP - BOTTOM) / 2.0,
        TOP + (HEIGHT - TOP - BOTTOM) / 2.0,
        escape(y_label)
    );
    for i in 0..=4 {
        let fraction = f64::from(i) / 4.0;
        let y = HEIGHT - BOTTOM - fraction * (HEIGHT - TOP - BOTTOM);
        let x = LEFT + fraction * (WIDTH - LEFT - RIGHT);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            short(y_max * fraction)
        );
        if x_max > 0.0 {
            let _ = writeln!(
                out,
                r#"<text x="{x}" y="{}" text-anchor="middle">{}</text>"#,
                HEIGHT - BOTTOM + 18.0,
                short(x_max * fraction)
            );
        }
    }
    let _ = writeln!(
        out,
        r#"<line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}" stroke="black"/>"#,
        HEIGHT - BOTTOM,
        WIDTH - RIGHT,
        HEIGHT - BOTTOM,
        HEIGHT - BOTTOM
    );
}

fn short(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// A line chart of `series`.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series<'_>]) -> String {
    let x_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(0.0, f64::max)
        .max(1e-9);
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.1;
    let mut out = String::new();
    frame(&mut out, title, x_label, y_label, x_max, y_max);
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = s
            .points
            .iter()
            .map(|(x, y)| {
                let px = LEFT + x / x_max * (WIDTH - LEFT - RIGHT);
                let py = HEIGHT - BOTTOM - y / y_max * (HEIGHT - TOP - BOTTOM);
                format!("{px:.1},{py:.1}")
            })
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        );
        let legend_x = LEFT + 10.0 + 110.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<rect x="{legend_x}" y="{}" width="12" height="3" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            TOP + 2.0,
            legend_x + 16.0,
            TOP + 7.0,
            escape(s.name)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// A bar chart of labelled counts.
pub fn bar_chart(title: &str, x_label: &str, y_label: &str, bars: &[(String, f64)]) -> String {
    let y_max = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1e-9) * 1.1;
    let mut out = String::new();
    frame(&mut out, title, x_label, y_label, 0.0, y_max);
    let slot = (WIDTH - LEFT - RIGHT) / bars.len().max(1) as f64;
    for (i, (label, value)) in bars.iter().enumerate() {
        let height = value / y_max * (HEIGHT - TOP - BOTTOM);
        let x = LEFT + slot * i as f64 + slot * 0.15;
        let _ = writeln!(
            out,
            r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{height:.1}" fill="#1f77b4"/><text x="{:.1}" y="{}" text-anchor="middle" font-size="10">{}</text>"##,
            HEIGHT - BOTTOM - height,
            slot * 0.7,
            x + slot * 0.35,
            HEIGHT - BOTTOM + 32.0,
            escape(label)
        );
    }
    out.push_str("</svg>\n");
    out
}
