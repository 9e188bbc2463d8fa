"""`hpscaler agent`: the node agent that reads IMDS on its own node and reports notices on its Node."""
