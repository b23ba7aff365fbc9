//! SLOs for nines: OpenSLO v1 definitions in, and for any instant or range the SLI, error
//! budget, burn rates, time to exhaustion, coverage, status and multiwindow burn-rate alerts
//! out. Everything here works on plain per-slice series (good and total counts per minute,
//! or a value per slice) that the caller reads from the tables: no I/O, no clock.
//! The formulas are in docs/slo.md.

pub mod alerts;
pub mod attribution;
pub mod budget;
pub mod duration;
pub mod eval;
pub mod gate;
pub mod model;
pub mod openslo;
pub mod sla;
pub mod verdict;
pub mod window;
