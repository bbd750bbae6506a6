"""The graph stage: a pruned KAN as a networkx DAG of inputs, sum/product nodes and outputs."""

from .build import EDGE_VAR, activation_edges, network_to_graph, set_biases

__all__ = ["EDGE_VAR", "activation_edges", "network_to_graph", "set_biases"]
