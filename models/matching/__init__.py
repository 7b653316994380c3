"""Technology matching: a consumer's need scored against a node's patents under CKKS encryption."""
