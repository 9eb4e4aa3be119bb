//! SimpleNet
