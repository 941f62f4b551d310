"""Skills and the generic AgentInstruct flows that run them."""
