//! Flows drawn as graphs: a flow's steps as boxes in layers by their
//! distance from the start, its exits as labelled arrows. The app turns
//! each loaded flow into a [`FlowGraph`] (the web layer does not reach
//! into the flow engine).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;

use super::html::esc;

/// A flow as the console draws it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowGraph {
    /// The flow's name.
    pub name: String,
    /// Its description, if any.
    pub description: Option<String>,
    /// The first step's id.
    pub start: String,
    /// Every step.
    pub steps: Vec<GraphStep>,
}

/// A step and where its exits lead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphStep {
    /// Step id.
    pub id: String,
    /// Its kind (`collect_digits`, …).
    pub kind: String,
    /// (exit name, target step id).
    pub exits: Vec<(String, String)>,
}

const BOX_W: f64 = 150.0;
const BOX_H: f64 = 36.0;
const GAP_X: f64 = 30.0;
const GAP_Y: f64 = 50.0;

/// The flow as SVG: steps layered by breadth-first distance from the
/// start (steps not reachable go in a last layer).
pub(crate) fn svg(g: &FlowGraph) -> String {
    let index: HashMap<&str, usize> = g
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let mut depth: Vec<Option<usize>> = vec![None; g.steps.len()];
    let mut queue = VecDeque::new();
    if let Some(&i) = index.get(g.start.as_str()) {
        depth[i] = Some(0);
        queue.push_back(i);
    }
    while let Some(i) = queue.pop_front() {
        let d = depth[i].unwrap_or(0);
        for (_, to) in &g.steps[i].exits {
            if let Some(&j) = index.get(to.as_str()) {
                if depth[j].is_none() {
                    depth[j] = Some(d + 1);
                    queue.push_back(j);
                }
            }
        }
    }
    let last = depth.iter().flatten().max().map_or(0, |d| d + 1);
    let mut layers: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, d) in depth.iter().enumerate() {
        layers.entry(d.unwrap_or(last)).or_default().push(i);
    }
    let mut pos = vec![(0.0, 0.0); g.steps.len()];
    let widest = layers.values().map(Vec::len).max().unwrap_or(1);
    let width = widest as f64 * (BOX_W + GAP_X) + GAP_X;
    for (row, (_, members)) in layers.iter().enumerate() {
        let row_w = members.len() as f64 * (BOX_W + GAP_X) - GAP_X;
        let x0 = (width - row_w) / 2.0;
        for (k, &i) in members.iter().enumerate() {
            pos[i] = (
                x0 + k as f64 * (BOX_W + GAP_X),
                10.0 + row as f64 * (BOX_H + GAP_Y),
            );
        }
    }
    let height = 20.0 + layers.len() as f64 * (BOX_H + GAP_Y);
    let mut s = format!(
        "<svg class=\"flow\" data-flow=\"{n}\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <defs><marker id=\"arr\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto\"><path d=\"M0,0L10,5L0,10z\" fill=\"#555\"/></marker></defs>",
        n = esc(&g.name)
    );
    for (i, step) in g.steps.iter().enumerate() {
        let (x, y) = pos[i];
        for (exit, to) in &step.exits {
            let Some(&j) = index.get(to.as_str()) else {
                continue;
            };
            let (tx, ty) = pos[j];
            let (x1, y1) = (x + BOX_W / 2.0, y + BOX_H);
            let (x2, y2) = if ty > y {
                (tx + BOX_W / 2.0, ty)
            } else {
                // Back or sideways edges enter from the side.
                (tx + BOX_W, ty + BOX_H / 2.0)
            };
            let _ = write!(
                s,
                "<line x1=\"{x1:.0}\" y1=\"{y1:.0}\" x2=\"{x2:.0}\" y2=\"{y2:.0}\" stroke=\"#555\" marker-end=\"url(#arr)\"/>\
                 <text x=\"{mx:.0}\" y=\"{my:.0}\" fill=\"#37474f\">{e}</text>",
                mx = (x1 + x2) / 2.0 + 3.0,
                my = (y1 + y2) / 2.0,
                e = esc(exit)
            );
        }
    }
    for (i, step) in g.steps.iter().enumerate() {
        let (x, y) = pos[i];
        let fill = if step.id == g.start {
            "#e3f2fd"
        } else {
            "#fff"
        };
        let _ = write!(
            s,
            "<g class=\"step\"><rect x=\"{x:.0}\" y=\"{y:.0}\" width=\"{BOX_W}\" height=\"{BOX_H}\" rx=\"4\" fill=\"{fill}\" stroke=\"#263238\"/>\
             <text x=\"{cx:.0}\" y=\"{ty:.0}\" text-anchor=\"middle\" font-weight=\"bold\">{id}</text>\
             <text x=\"{cx:.0}\" y=\"{ky:.0}\" text-anchor=\"middle\" fill=\"#607d8b\">{k}</text></g>",
            cx = x + BOX_W / 2.0,
            ty = y + 15.0,
            ky = y + 29.0,
            id = esc(&step.id),
            k = esc(&step.kind)
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_is_a_box_and_every_exit_an_arrow() {
        let g = FlowGraph {
            name: "f".into(),
            description: None,
            start: "a".into(),
            steps: vec![
                GraphStep {
                    id: "a".into(),
                    kind: "play".into(),
                    exits: vec![("next".into(), "b".into())],
                },
                GraphStep {
                    id: "b".into(),
                    kind: "collect_digits".into(),
                    exits: vec![("retry".into(), "a".into()), ("ok".into(), "<c>".into())],
                },
                GraphStep {
                    id: "<c>".into(),
                    kind: "hangup".into(),
                    exits: vec![],
                },
            ],
        };
        let s = svg(&g);
        assert_eq!(s.matches("class=\"step\"").count(), 3);
        assert_eq!(s.matches("<line").count(), 3);
        assert!(s.contains("&lt;c&gt;") && !s.contains("<c>"));
    }
}
