"""Text reference data: short generated messages about four topics, some labels flipped.

Each example is one sentence, lower case, words separated by single spaces, whose class is
its topic: `sports` (0), `weather` (1), `cooking` (2) or `finance` (3). A sentence is one
of a few shared templates whose slots take the topic's own nouns, verbs and adjectives,
joined by shared filler phrases, so length varies (about 5 to 25 words) and most words
carry no signal. One slot in about sixteen takes a word of another topic instead, so a
few sentences are genuinely ambiguous and a model does not reach 100% on clean labels.

The wrong labels are planted: half of each split's flipped labels are drawn from the
sentences that hold the filler `according to the news` (about one in seven), so the
tokens `according` and `news` gather among them (PLANTED_TOKEN; `planted_share=0` spreads
the flips evenly). The filler belongs to no topic, so the model cannot learn the noise.

Each example holds `example_id` (`text-<row>`), `text` (bytes, UTF-8), `label` (the topic
the model trains on, flipped for some sentences) and `label_flipped` (1 where it was
flipped; never read by a model). Splits go to `<output_dir>/<split>/text.tfrecord.gz`
(see pipeline.reference.noisy_labels), read by ImportExampleGen with `demo_data.input_config()`.
"""

from typing import Dict, List, Tuple

import numpy as np

from pipeline.reference import noisy_labels

NAME = 'text'
TEXT_KEY = 'text'
RAW_FEATURES = (TEXT_KEY,)
CLASS_NAMES = ('sports', 'weather', 'cooking', 'finance')
NUM_CLASSES = len(CLASS_NAMES)
DEFAULT_EXAMPLES = 2000
# The share of slots filled with another topic's word.
CONFUSION = 0.06
# The planted slice: the sentences holding this token (of the filler 'according to the
# news') hold half of the flipped labels.
PLANTED_TOKEN = 'news'

# Per topic: nouns, verbs (past tense), adjectives.
_VOCABULARY = {
    'sports': (('striker', 'goalkeeper', 'match', 'league', 'coach', 'referee', 'team',
                'stadium', 'penalty', 'season', 'tournament', 'midfielder', 'trophy',
                'derby', 'fans'),
               ('scored', 'defended', 'tackled', 'won', 'lost', 'dribbled', 'trained',
                'substituted', 'celebrated', 'equalised'),
               ('offside', 'athletic', 'unbeaten', 'relegated', 'decisive', 'tactical')),
    'weather': (('storm', 'forecast', 'rain', 'drizzle', 'thunder', 'humidity', 'breeze',
                 'snowfall', 'fog', 'heatwave', 'cloud', 'frost', 'hail', 'sunshine',
                 'gust'),
                ('poured', 'cleared', 'froze', 'drifted', 'thundered', 'drizzled',
                 'warmed', 'flooded', 'gusted', 'melted'),
                ('cloudy', 'humid', 'chilly', 'stormy', 'overcast', 'freezing')),
    'cooking': (('recipe', 'oven', 'sauce', 'garlic', 'skillet', 'dough', 'butter',
                 'onion', 'broth', 'pastry', 'basil', 'marinade', 'spatula', 'chef',
                 'dessert'),
                ('baked', 'simmered', 'chopped', 'whisked', 'roasted', 'seasoned',
                 'kneaded', 'sauteed', 'grilled', 'stirred'),
                ('crispy', 'savory', 'tender', 'spicy', 'creamy', 'golden')),
    'finance': (('stock', 'portfolio', 'dividend', 'bond', 'investor', 'market', 'loan',
                 'interest', 'shares', 'budget', 'inflation', 'broker', 'earnings',
                 'mortgage', 'fund'),
                ('invested', 'traded', 'rallied', 'borrowed', 'hedged', 'audited',
                 'refinanced', 'diversified', 'plunged', 'rebounded'),
                ('bullish', 'bearish', 'volatile', 'fiscal', 'profitable', 'liquid')),
}
# Templates: {n}, {v}, {a} are the topic's slots; the rest is shared.
_TEMPLATES = (
    'the {a} {n} {v} {t}',
    'i heard the {n} {v} and the {n} looked {a}',
    'nobody expected the {n} to be so {a} after it {v}',
    '{t} the {n} {v} the {n} again',
    'my friend said the {n} was {a} and the {n} {v}',
    'people keep talking about the {a} {n} and the {n}',
    'we {v} the {n} before the {n} {v}',
    'it seems the {n} {v} {t} while the {n} stayed {a}',
)
_TIMES = ('today', 'yesterday', 'this morning', 'last night', 'on sunday', 'after lunch',
          'this week', 'at noon')
_FILLERS = ('to be honest', 'as usual', 'for what it is worth', 'or so they say',
            'and that was that', 'if you ask me', 'believe it or not',
            'which surprised everyone', 'according to the news', 'more or less')


def _word(rng: np.random.Generator, topic: int, kind: int) -> str:
  if rng.random() < CONFUSION:
    topic = int((topic + rng.integers(1, NUM_CLASSES)) % NUM_CLASSES)
  words = _VOCABULARY[CLASS_NAMES[topic]][kind]
  return words[rng.integers(len(words))]


def sentence(rng: np.random.Generator, topic: int) -> str:
  """One sentence about `topic` (a class index), drawn with `rng`."""
  template = _TEMPLATES[rng.integers(len(_TEMPLATES))]
  words: List[str] = []
  for token in template.split():
    if token == '{n}':
      words.append(_word(rng, topic, 0))
    elif token == '{v}':
      words.append(_word(rng, topic, 1))
    elif token == '{a}':
      words.append(_word(rng, topic, 2))
    elif token == '{t}':
      words.append(_TIMES[rng.integers(len(_TIMES))])
    else:
      words.append(token)
  clauses = [' '.join(words)]
  for _ in range(rng.integers(0, 4)):
    filler = _FILLERS[rng.integers(len(_FILLERS))]
    clauses.insert(int(rng.integers(0, len(clauses) + 1)), filler)
  return ' '.join(clauses)


def generate_rows(num_examples: int, seed: int
                  ) -> Tuple[List[Dict[str, str]], np.ndarray]:
  """(rows, true topics): `num_examples` sentences, topics balanced, drawn with `seed`."""
  rng = np.random.default_rng((seed, 4))
  topics = rng.permutation(np.arange(num_examples) % NUM_CLASSES).astype(np.int64)
  return [{TEXT_KEY: sentence(rng, int(t))} for t in topics], topics


def write_text_data(output_dir: str, flip_fraction: float = 0.1, seed: int = 0,
                    num_examples: int = DEFAULT_EXAMPLES,
                    eval_fraction: float = 0.25,
                    planted_share: float = noisy_labels.PLANTED_SHARE
                    ) -> Dict[str, noisy_labels.SplitSummary]:
  """Writes the text data set; returns a summary per split.

  Args:
    output_dir: folder to write `<split>/text.tfrecord.gz` and `demo_data.json` into.
    flip_fraction: share of labels flipped to another topic in each split, in [0, 1].
    seed: seeds the sentences, the split, which labels flip and to what.
    num_examples: how many sentences (at least 20); DEFAULT_EXAMPLES when None.
    eval_fraction: share of the sentences in the `eval` split, in (0, 1).
    planted_share: share of each split's flips drawn from the sentences holding
      PLANTED_TOKEN, in [0, 1]; 0 draws them from every sentence alike.

  Raises:
    ValueError: a share out of range or too few examples, named.
  """
  num_examples = DEFAULT_EXAMPLES if num_examples is None else num_examples
  return noisy_labels.write_generated(output_dir, NAME, generate_rows, NUM_CLASSES,
                                      CLASS_NAMES, flip_fraction, seed, num_examples,
                                      eval_fraction, _planted(), planted_share)


def _planted():
  return (f'{TEXT_KEY} token {PLANTED_TOKEN}',
          lambda row: PLANTED_TOKEN in row[TEXT_KEY].split())
