"""Reference solutions for notebook 05 (feature visualisation). Try the exercises first!"""


# Exercise 1: the weights of one query over the cache tokens; the largest one.
def top_token(attention, row, query):
    return int(attention[row, query].argmax())


# Exercise 2: resolution: a 16x16 token is 4x4 pixels, about one glyph cell.
glyph_answer = "a"
