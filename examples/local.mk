## examples: (see issue)
