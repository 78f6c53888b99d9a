"""Reference solutions for notebook 02 (layer and timestep selection). Try the exercises first!"""

import numpy as np


# Exercise 1 is a prediction, any layer is a valid guess. The paper's single most useful part is
# the decoder; its lowest-resolution, most semantic layer is the mid-block.
layer_guess = "mid_block.attentions.0"


# Exercise 2: top-1 retrieval from a distance matrix.
def top1_retrieval(dist, labels):
    dist = np.array(dist, dtype=float)            # a copy: do not change the caller's matrix
    np.fill_diagonal(dist, np.inf)                # a sample must not retrieve itself
    nearest = dist.argmin(axis=1)
    labels = np.asarray(labels)
    return float(np.mean(labels[nearest] == labels))


# Exercise 3: read the trend off the sweep: average each timestep's column over the layers and
# compare the largest timestep with t = 1.
def timestep_trend(scores, timesteps):
    mean = np.asarray(scores).mean(axis=0)
    change = mean[np.argmax(timesteps)] - mean[np.argmin(timesteps)]
    return "a" if change < -0.03 else "b" if change > 0.03 else "c"
