package gitward.keys
