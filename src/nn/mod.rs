//! Noise-prediction networks. They map (x_t, t, labels) to ε and know nothing of the schedule.
pub mod digit_classifier;
pub mod embedding;
pub mod init;
pub mod simplenet;
pub mod unet;
