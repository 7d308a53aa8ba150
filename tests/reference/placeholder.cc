// The reference forward pass lives here (see reference_model.h).
