//! BBA-0, the buffer-based algorithm of Huang et al. ("A Buffer-Based Approach to Rate
//! Adaptation", SIGCOMM 2014).
//!
//! The buffer alone picks the rate through a piecewise-linear map: the lowest rate while the
//! buffer is in the *reservoir*, the highest once it is past reservoir + *cushion*, and in
//! between a line from one to the other. The rate only changes when the map crosses the next
//! rung up or down, which gives BBA its few switches. The paper's reservoir and cushion were
//! sized for a 240 s buffer; here they scale with the buffer: reservoir = 20 % of it (at
//! least one segment), the map reaches the top at 80 %.

use super::{Abr, Choice, Ctx};
use crate::content::Content;

#[derive(Debug, Clone)]
pub(crate) struct Bba {
    reservoir_ms: f64,
    cushion_ms: f64,
    last: usize,
}

impl Bba {
    pub(crate) fn new(content: &Content, max_buffer_ms: f64) -> Bba {
        let reservoir_ms = (0.2 * max_buffer_ms).max(content.segment_ms);
        let upper = (0.8 * max_buffer_ms).max(reservoir_ms + content.segment_ms);
        Bba {
            reservoir_ms,
            cushion_ms: upper - reservoir_ms,
            last: 0,
        }
    }
}

impl Abr for Bba {
    fn choose(&mut self, ctx: &Ctx, _segment: usize) -> Choice {
        let rates = &ctx.content.bitrates_kbps;
        let top = rates.len() - 1;
        let b = ctx.buffer_ms;
        let q = if b <= self.reservoir_ms {
            0
        } else if b >= self.reservoir_ms + self.cushion_ms {
            top
        } else {
            let f = rates[0] + (rates[top] - rates[0]) * (b - self.reservoir_ms) / self.cushion_ms;
            let plus = rates[(self.last + 1).min(top)];
            let minus = rates[self.last.saturating_sub(1)];
            if f >= plus {
                // The highest rate below the map.
                (0..=top).rev().find(|&i| rates[i] < f).unwrap_or(0)
            } else if f <= minus {
                // The lowest rate above the map.
                (0..=top).find(|&i| rates[i] > f).unwrap_or(top)
            } else {
                self.last
            }
        };
        self.last = q;
        Choice::now(q)
    }
}
