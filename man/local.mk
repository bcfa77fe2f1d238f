## man: (see issue)
