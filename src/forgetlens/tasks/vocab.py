"""Word lists shared by the prior-capability tasks and the embedded pretraining corpus.

Every entry is written as it appears after a space (" Mary"); tasks check at
render time that each is a single token for the tokenizer in use.
"""

NAMES = [
    "Mary",
    "John",
    "Alice",
    "Bob",
    "Tom",
    "Anna",
    "James",
    "Sarah",
    "David",
    "Emma",
    "Paul",
    "Kate",
    "Mark",
    "Lucy",
    "Peter",
    "Jane",
    "Adam",
    "Laura",
    "Sam",
    "Helen",
]
PLACES = ["store", "park", "school", "beach", "market", "garden", "station", "office"]
OBJECTS = ["drink", "book", "ball", "gift", "letter", "key", "card", "bag"]

# Words for the induction/copying task: short, common, disjoint from the other lists.
COPY_WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "horse",
    "glass",
    "chair",
    "bread",
    "light",
    "music",
    "paper",
    "plant",
    "queen",
    "sugar",
    "table",
    "train",
    "water",
    "wheel",
    "bird",
    "boat",
    "cake",
    "coat",
    "door",
    "fish",
    "fire",
    "hand",
    "hill",
    "lamp",
    "milk",
    "moon",
    "nose",
    "ring",
    "rain",
    "road",
    "salt",
    "ship",
    "star",
    "tree",
    "wind",
    "wood",
]

DIGITS = [str(d) for d in range(10)]

# Events that last a span of years (greater_than_year, after Hanna et al. 2023's list of nouns).
EVENTS = [
    "war",
    "expedition",
    "reign",
    "drought",
    "famine",
    "voyage",
    "siege",
    "dynasty",
    "strike",
    "festival",
    "project",
    "occupation",
]

# (country, capital) pairs for fact recall; both single words.
CAPITALS = [
    ("France", "Paris"),
    ("Germany", "Berlin"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Japan", "Tokyo"),
    ("China", "Beijing"),
    ("Russia", "Moscow"),
    ("Egypt", "Cairo"),
    ("Greece", "Athens"),
    ("Canada", "Ottawa"),
    ("Peru", "Lima"),
    ("Kenya", "Nairobi"),
    ("Norway", "Oslo"),
    ("Cuba", "Havana"),
    ("Iran", "Tehran"),
    ("Poland", "Warsaw"),
    ("Austria", "Vienna"),
    ("Ireland", "Dublin"),
    ("Sweden", "Stockholm"),
    ("India", "Delhi"),
]
