//! LMS (linear multistep, order 4), as diffusers' LMSDiscreteScheduler steps
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/schedulers/scheduling_lms_discrete.py>):
//! each step integrates the Lagrange polynomial through the slopes of the last four steps
//! over the step's sigma interval. diffusers integrates numerically (`scipy.integrate.quad`);
//! the integrand is a polynomial of degree 3 at most, which Gauss-Legendre quadrature with
//! four nodes integrates exactly.

use burn::tensor::Tensor;

use super::{exploding_calls, Call, NoiseSource, Stepper};
use crate::sampling::{Prediction, Schedule, TrainSchedule};

/// diffusers' default order.
const ORDER: usize = 4;

struct Lms {
    prediction: Prediction,
    sigmas: Vec<f32>,
    calls: Vec<Call>,
    /// The slopes of the last steps, most recent last.
    derivatives: Vec<Tensor<4>>,
}

pub fn lms(schedule: &Schedule, _: &TrainSchedule, prediction: Prediction) -> Box<dyn Stepper> {
    Box::new(Lms {
        prediction,
        sigmas: schedule.sigmas.clone(),
        calls: exploding_calls(schedule),
        derivatives: Vec::new(),
    })
}

impl Lms {
    /// The integral over `[sigmas[i], sigmas[i + 1]]` of the Lagrange basis polynomial of node
    /// `current` among the nodes `sigmas[i], sigmas[i - 1], ...` (`order` of them).
    fn coefficient(&self, order: usize, i: usize, current: usize) -> f64 {
        let node = |k: usize| f64::from(self.sigmas[i - k]);
        let basis = |tau: f64| {
            (0..order)
                .filter(|&k| k != current)
                .map(|k| (tau - node(k)) / (node(current) - node(k)))
                .product::<f64>()
        };
        let (a, b) = (f64::from(self.sigmas[i]), f64::from(self.sigmas[i + 1]));
        gauss_legendre_4(basis, a, b)
    }
}

/// The integral of `f` over `[a, b]` by four-node Gauss-Legendre quadrature (exact for
/// polynomials of degree 7 or less).
fn gauss_legendre_4(f: impl Fn(f64) -> f64, a: f64, b: f64) -> f64 {
    const NODES: [(f64, f64); 4] = [
        (-0.861_136_311_594_052_6, 0.347_854_845_137_453_9),
        (-0.339_981_043_584_856_3, 0.652_145_154_862_546_1),
        (0.339_981_043_584_856_3, 0.652_145_154_862_546_1),
        (0.861_136_311_594_052_6, 0.347_854_845_137_453_9),
    ];
    let (mid, half) = ((a + b) / 2.0, (b - a) / 2.0);
    NODES
        .iter()
        .map(|&(x, w)| w * f(mid + half * x))
        .sum::<f64>()
        * half
}

impl Stepper for Lms {
    fn calls(&self) -> &[Call] {
        &self.calls
    }

    fn step(
        &mut self,
        i: usize,
        output: Tensor<4>,
        x: Tensor<4>,
        _: &mut dyn NoiseSource,
    ) -> Tensor<4> {
        let sigma = f64::from(self.sigmas[i]);
        let x0 = self.prediction.x0_exploding(&output, &x, sigma);
        self.derivatives.push((x.clone() - x0) / sigma);
        if self.derivatives.len() > ORDER {
            self.derivatives.remove(0);
        }
        // diffusers: min(step_index + 1, order)
        let order = (i + 1).min(ORDER);
        let mut next = x;
        for (k, derivative) in self.derivatives.iter().rev().take(order).enumerate() {
            next = next + derivative.clone() * self.coefficient(order, i, k);
        }
        next
    }

    fn denoised(&self, i: usize, output: &Tensor<4>, x: &Tensor<4>) -> Tensor<4> {
        self.prediction
            .x0_exploding(output, x, f64::from(self.sigmas[i]))
    }

    fn restart(&mut self) {
        self.derivatives.clear();
    }
}
