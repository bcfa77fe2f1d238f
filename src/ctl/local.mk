## src/ctl: (see issue)
