//! Bounded Nelder–Mead: the derivative-free minimiser the smoothing models fit with (as R's
//! `forecast` and statsforecast do). Adaptive coefficients (Gao & Han 2012) for higher
//! dimensions; bounds are kept by clamping every trial point.

pub struct Minimum {
    pub x: Vec<f64>,
    pub f: f64,
}

/// When the search stops.
#[derive(Debug, Clone, Copy)]
pub struct Stop {
    pub max_iter: usize,
    /// Stop once the standard deviation of the simplex's values falls below this (statsforecast's
    /// `tol_std`); 0 = only when the simplex has collapsed (values and points agree to 1e-8).
    pub f_std: f64,
}

impl Stop {
    /// Converge fully, within `max_iter` iterations.
    pub fn converged(max_iter: usize) -> Self {
        Self { max_iter, f_std: 0.0 }
    }
}

pub fn nelder_mead(f: impl Fn(&[f64]) -> f64, x0: &[f64], lower: &[f64], upper: &[f64], stop: Stop) -> Minimum {
    let n = x0.len();
    let clamp = |x: &mut Vec<f64>| x.iter_mut().enumerate().for_each(|(i, v)| *v = v.clamp(lower[i], upper[i]));
    let eval = |x: &[f64]| {
        let v = f(x);
        if v.is_nan() { f64::INFINITY } else { v }
    };
    if n == 0 {
        return Minimum { x: vec![], f: eval(&[]) };
    }
    let d = n as f64;
    let (alpha, gamma, rho, sigma) = (1.0, 1.0 + 2.0 / d, 0.75 - 1.0 / (2.0 * d), 1.0 - 1.0 / d);
    let mut simplex: Vec<(Vec<f64>, f64)> = Vec::with_capacity(n + 1);
    let mut start = x0.to_vec();
    clamp(&mut start);
    simplex.push((start.clone(), eval(&start)));
    for i in 0..n {
        let mut x = start.clone();
        x[i] = if x[i] == 0.0 { 1e-4 } else { x[i] * 1.05 };
        clamp(&mut x);
        let fx = eval(&x);
        simplex.push((x, fx));
    }
    for _ in 0..stop.max_iter {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        let (best, worst) = (simplex[0].1, simplex[n].1);
        let spread = (worst - best).abs();
        let done = if stop.f_std > 0.0 {
            values_std(&simplex) < stop.f_std
        } else {
            spread <= 1e-8 * (best.abs() + 1e-8) && simplex_size(&simplex) < 1e-8
        };
        if done {
            break;
        }
        let centroid: Vec<f64> = (0..n).map(|j| simplex[..n].iter().map(|p| p.0[j]).sum::<f64>() / d).collect();
        // The point centroid + t (target - centroid), clamped into the bounds, and its value.
        let along = |target: &[f64], t: f64| {
            let mut x: Vec<f64> = (0..n).map(|j| centroid[j] + t * (target[j] - centroid[j])).collect();
            clamp(&mut x);
            let fx = eval(&x);
            (x, fx)
        };
        let towards = |t: f64| along(&simplex[n].0, t);
        let reflected = towards(-alpha);
        if reflected.1 < best {
            let expanded = along(&reflected.0, gamma);
            simplex[n] = if expanded.1 < reflected.1 { expanded } else { reflected };
        } else if reflected.1 < simplex[n - 1].1 {
            simplex[n] = reflected;
        } else {
            let contracted = if reflected.1 < worst { towards(-alpha * rho) } else { towards(rho) };
            if contracted.1 < worst.min(reflected.1) {
                simplex[n] = contracted;
            } else {
                let x_best = simplex[0].0.clone();
                for p in simplex.iter_mut().skip(1) {
                    for j in 0..n {
                        p.0[j] = x_best[j] + sigma * (p.0[j] - x_best[j]);
                    }
                    p.1 = eval(&p.0);
                }
            }
        }
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    let (x, f) = simplex.swap_remove(0);
    Minimum { x, f }
}

/// Population standard deviation of the simplex's values (NaN when any is infinite).
fn values_std(simplex: &[(Vec<f64>, f64)]) -> f64 {
    let n = simplex.len() as f64;
    let mean = simplex.iter().map(|p| p.1).sum::<f64>() / n;
    (simplex.iter().map(|p| (p.1 - mean).powi(2)).sum::<f64>() / n).sqrt()
}

fn simplex_size(simplex: &[(Vec<f64>, f64)]) -> f64 {
    let first = &simplex[0].0;
    simplex[1..].iter().map(|p| p.0.iter().zip(first).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)).fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_rosenbrock_minimum_and_respects_bounds() {
        let rosen = |x: &[f64]| (1.0 - x[0]).powi(2) + 100.0 * (x[1] - x[0] * x[0]).powi(2);
        let m = nelder_mead(rosen, &[-1.2, 1.0], &[-5.0, -5.0], &[5.0, 5.0], Stop::converged(5000));
        assert!((m.x[0] - 1.0).abs() < 1e-3 && (m.x[1] - 1.0).abs() < 1e-3, "{:?}", m.x);
        let m = nelder_mead(|x: &[f64]| (x[0] - 3.0).powi(2), &[0.5], &[0.0], &[1.0], Stop::converged(500));
        assert!((m.x[0] - 1.0).abs() < 1e-9, "bounded at 1: {:?}", m.x);
    }

    #[test]
    fn a_value_tolerance_stops_once_the_simplex_values_agree() {
        let calls = std::cell::Cell::new(0);
        let bowl = |x: &[f64]| {
            calls.set(calls.get() + 1);
            (x[0] - 2.0).powi(2) + (x[1] + 1.0).powi(2)
        };
        let full = nelder_mead(bowl, &[0.5, 0.5], &[-9.0; 2], &[9.0; 2], Stop::converged(2000));
        let full_calls = calls.replace(0);
        let early = nelder_mead(bowl, &[0.5, 0.5], &[-9.0; 2], &[9.0; 2], Stop { max_iter: 2000, f_std: 1e-4 });
        assert!(calls.get() < full_calls / 2, "{} calls against {full_calls}", calls.get());
        assert!(full.f < 1e-12 && early.f < 1e-3 && early.f > full.f, "{} {}", early.f, full.f);
    }
}
