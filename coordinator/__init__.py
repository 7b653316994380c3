"""The coordinator: a REST job API over mTLS, the federated catalog, the agreement registry and job state.

It is honest-but-curious: it never sees rows or a single node's update, and every node checks its calls on
its own. Nodes and the coordinator meet only over gRPC, REST and Flower; neither imports the other.
"""
