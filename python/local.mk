## python: (see issue)
