## src/fs: (see issue)
