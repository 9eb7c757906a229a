//! The rows as a table, as JSON, as an SVG bar chart.

use super::Row;

/// The rows as a table.
pub fn table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<8} {:<52} {:>12} {:>12} {:>8}  {}\n",
        "GROUP", "WORKLOAD", "VMSPACE", "OTHER", "RATIO", "AGAINST"
    );
    for r in rows {
        s += &format!(
            "{:<8} {:<52} {:>10.1}ns {:>10.1}ns {:>7.2}x  {}\n",
            r.group,
            r.workload,
            r.vmspace_ns,
            r.alternative_ns,
            r.vmspace_ns / r.alternative_ns,
            r.alternative
        );
    }
    let space = if rows.iter().any(|r| r.group == "space") {
        format!(" (space: of {} interleaved rounds)", super::space::ROUNDS)
    } else {
        String::new()
    };
    s + &format!("ratio = vmspace / other (below 1: vmspace is faster); medians of 7 samples{space}\n")
}

/// The rows as JSON.
pub fn json(rows: &[Row]) -> String {
    let items: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{{\"group\":\"{}\",\"workload\":\"{}\",\"alternative\":\"{}\",\"vmspace_ns\":{:.1},\"alternative_ns\":{:.1},\"ratio\":{:.3}}}",
                r.group,
                r.workload,
                r.alternative,
                r.vmspace_ns,
                r.alternative_ns,
                r.vmspace_ns / r.alternative_ns
            )
        })
        .collect();
    format!("[{}]\n", items.join(","))
}

/// The rows as an SVG bar chart: one bar per workload, its length the ratio on a log scale
/// (0.01× to 100×), with a line at 1× (parity).
pub fn svg(rows: &[Row]) -> String {
    let (w, row_h, left) = (900.0, 28.0, 430.0);
    let h = 60.0 + row_h * rows.len() as f64;
    let x = |ratio: f64| left + (ratio.clamp(0.01, 100.0).log10() + 2.0) / 4.0 * (w - left - 20.0);
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <text x=\"10\" y=\"20\" font-size=\"14\">vmspace / alternative (log scale; left of the line: vmspace is faster)</text>\n\
         <line x1=\"{p}\" y1=\"30\" x2=\"{p}\" y2=\"{h}\" stroke=\"#444\" stroke-dasharray=\"4 3\"/>\n",
        p = x(1.0)
    );
    for (i, r) in rows.iter().enumerate() {
        let ratio = r.vmspace_ns / r.alternative_ns;
        let y = 40.0 + row_h * i as f64;
        let (a, b) = (x(1.0).min(x(ratio)), x(1.0).max(x(ratio)));
        let colour = if ratio <= 1.0 { "#2e7d32" } else { "#c62828" };
        s += &format!(
            "<text x=\"10\" y=\"{ty}\">{g}: {wk}</text>\n<rect x=\"{a:.1}\" y=\"{y}\" width=\"{bw:.1}\" height=\"18\" fill=\"{colour}\"><title>{g}: {wk}: {ratio:.3}x against {alt}</title></rect>\n<text x=\"{tx:.1}\" y=\"{ty}\">{ratio:.2}x</text>\n",
            ty = y + 13.0,
            g = r.group,
            wk = esc(&r.workload),
            alt = esc(r.alternative),
            bw = (b - a).max(1.0),
            tx = b + 4.0,
        );
    }
    s + "</svg>\n"
}
