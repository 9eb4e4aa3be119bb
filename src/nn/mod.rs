//! Networks: noise predictors (which map (x_t, t, labels) to ε and know nothing of the
//! schedule), the FID feature network and the digits evaluation classifier.
pub mod digit_classifier;
pub mod embedding;
pub mod inception;
pub mod inception_load;
pub mod inception_train;
pub mod init;
pub mod simplenet;
pub mod unet;
