"""Pieces shared by the generative methods: weight-normed layers with data-dependent init, Gaussian noise,
an exponential moving average of weights, learning-rate schedules. Pure torch: no Ray, no MLflow."""
