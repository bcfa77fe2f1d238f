## bench: (see issue)
