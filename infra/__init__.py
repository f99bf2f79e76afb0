"""AWS deployment of the classifier: SAM template, build recipe, sample events and local tools."""
