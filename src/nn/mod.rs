//! Noise-prediction networks. They map (x_t, t, labels) to ε and know nothing of the schedule.
pub mod embedding;
pub mod simplenet;
pub mod inception;
pub mod inception_load;
pub mod inception_train;
