"""English: the language of the skill adapters' training data (math word problems, code docstrings)."""

from __future__ import annotations

NAMES = {
    "f": ("Anna", "Emily", "Sarah", "Lucy", "Grace", "Emma", "Olivia", "Kate"),
    "m": ("Tom", "James", "Jack", "Ben", "Sam", "Peter", "David", "Oliver"),
}

# noun id -> (singular, plural)
NOUNS = {
    "apple": ("apple", "apples"),
    "pencil": ("pencil", "pencils"),
    "book": ("book", "books"),
    "cookie": ("cookie", "cookies"),
    "flower": ("flower", "flowers"),
    "stamp": ("stamp", "stamps"),
    "marble": ("marble", "marbles"),
    "card": ("card", "cards"),
    "orange": ("orange", "oranges"),
    "candy": ("candy", "candies"),
    "box": ("box", "boxes"),
    "bag": ("bag", "bags"),
    "basket": ("basket", "baskets"),
    "coin": ("coin", "coins"),
}

# place id -> (at the place, to the place)
PLACES = {
    "shop": ("at the shop", "to the shop"),
    "park": ("in the park", "to the park"),
    "school": ("at school", "to school"),
    "garden": ("in the garden", "to the garden"),
    "library": ("in the library", "to the library"),
}

# how sentences of one paragraph are joined
SENTENCE_SEPARATOR = " "


def counted(n: int, noun_id: str, case: str = "nom") -> str:
    """`n` with its noun: "1 apple", "5 apples"."""
    singular, plural = NOUNS[noun_id]
    return f"{n} {singular if n == 1 else plural}"


def slots(person: tuple[str, int], friend: tuple[str, int], object_id: str, container_id: str, place_id: str) -> dict:
    """The word forms the English templates use."""
    at_place, to_place = PLACES[place_id]
    return {
        "name": NAMES[person[0]][person[1]],
        "friend": NAMES[friend[0]][friend[1]],
        "obj": NOUNS[object_id][0],
        "objs": NOUNS[object_id][1],
        "box": NOUNS[container_id][0],
        "at_place": at_place,
        "to_place": to_place,
    }


# Clause templates of the word problems; {q} is the clause's number with the object noun, {boxes} the number of
# containers, {coins} a price. Each tuple is aligned by index with the other languages' tuples.
MATH_CLAUSES = {
    "have": ("{name} has {q}.", "{name} keeps {q} at home."),
    "more": (
        "{name} buys {n} more {objs}.",
        "{friend} gives {name} {n} more {objs}.",
        "Then {name} finds {n} more {objs}.",
    ),
    "less": ("{name} gives {q} to {friend}.", "{name} gives away {q}.", "Then {name} loses {q}."),
    "boxes": ("{name} has {boxes} with {q} in each.", "{name} brings {boxes}, and each {box} holds {q}."),
    "ask_now": ("How many {objs} does {name} have now?",),
    "ask_all": ("How many {objs} does {name} have in total?",),
    "share_ask": (
        "{name} shares the {objs} equally among {n} friends. How many {objs} does each friend get?",
        "{name} gives out the {objs} equally to {n} students. How many {objs} does each student get?",
    ),
    "sell_ask": (
        "{name} sells all the {objs} for {coins} each. How many coins does {name} get?",
        "{name} sells the {objs}, and each one costs {coins}. How many coins does {name} get for all of them?",
    ),
}

CODE_PHRASES = {
    "add_each": "Return a new list in which {k} is added to every number of xs.",
    "subtract_each": "Return a new list in which {k} is subtracted from every number of xs.",
    "multiply_each": "Return a new list in which every number of xs is multiplied by {k}.",
    "square_each": "Return a new list with the square of every number of xs.",
    "keep_greater": "Return the numbers of xs that are greater than {k}, in their original order.",
    "keep_less": "Return the numbers of xs that are smaller than {k}, in their original order.",
    "keep_even": "Return the even numbers of xs, in their original order.",
    "keep_odd": "Return the odd numbers of xs, in their original order.",
    "keep_multiples": "Return the numbers of xs that are divisible by {k}, in their original order.",
    "remove_value": "Return xs without the numbers equal to {k}.",
    "sum_all": "Return the sum of the numbers in xs.",
    "sum_even": "Return the sum of the even numbers in xs.",
    "sum_greater": "Return the sum of the numbers in xs that are greater than {k}.",
    "product": "Return the product of all the numbers in xs.",
    "count_even": "Return how many even numbers there are in xs.",
    "count_greater": "Return how many numbers in xs are greater than {k}.",
    "count_value": "Return how many times the number {k} appears in xs.",
    "contains_value": "Return True if the number {k} appears in xs, and False otherwise.",
    "maximum": "Return the largest number in xs.",
    "minimum": "Return the smallest number in xs.",
    "spread": "Return the difference between the largest and the smallest number in xs.",
    "reverse_list": "Return the numbers of xs in reverse order.",
    "sort_ascending": "Return the numbers of xs sorted from smallest to largest.",
    "sort_descending": "Return the numbers of xs sorted from largest to smallest.",
    "first_k": "Return the first {k} numbers of xs.",
    "last_k": "Return the last {k} numbers of xs.",
    "index_of_max": "Return the position (counting from 0) of the largest number in xs.",
    "times_k": "Return the number n multiplied by {k}.",
    "is_even": "Return True if n is even, and False otherwise.",
    "divisible_by": "Return True if n is divisible by {k}, and False otherwise.",
    "sum_to_n": "Return the sum of all the numbers from 1 to n.",
    "range_list": "Return the list of the numbers from 1 to n.",
    "multiples_list": "Return the list of the first n multiples of {k}.",
    "digit_sum": "Return the sum of the digits of n.",
    "factorial": "Return the product of all the numbers from 1 to n.",
    "count_digits": "Return how many digits the number n has.",
    "square_n": "Return the square of n.",
    "reverse_string": "Return the string s written backwards.",
    "to_upper": "Return the string s in capital letters.",
    "count_letter": 'Return how many times the letter "{k}" appears in s.',
    "replace_letter": 'Return s with every letter "{k}" replaced by "{k2}".',
    "first_chars": "Return the first {k} characters of s.",
    "string_length": "Return the number of characters in s.",
    "count_vowels": "Return how many vowels (a, e, i, o, u) there are in s.",
    "is_palindrome": "Return True if s reads the same forwards and backwards, and False otherwise.",
    "repeat_string": "Return the string s repeated {k} times.",
    "count_words": "Return how many words there are in the sentence s.",
    "join_words": "Return one string made of the words in words, separated by spaces.",
    "longest_word": "Return the longest word in words (the first one if several are equally long).",
    "word_lengths": "Return a list with the length of every word in words.",
    "keep_long_words": "Return the words in words that have more than {k} letters.",
    "starts_with": 'Return the words in words that start with the letter "{k}".',
    "upper_words": "Return a list with every word in words written in capital letters.",
    "sort_words": "Return the words in words in alphabetical order.",
}

# Plain narrative: the vocabulary of the problems and docstrings, with no question answered and no code.
GENERAL_SENTENCES = (
    "{name} goes {to_place} with {friend}.",
    "{name} likes {objs} very much.",
    "{name} has {q}.",
    "{friend} puts the {objs} into a {box}.",
    "{name} counts the {objs} {at_place}.",
    "{name} writes a list of numbers in a notebook.",
    "{friend} reads the list from the first number to the last.",
    "{name} finds the largest number in the list.",
    "{friend} finds the smallest number in the list.",
    "{name} keeps only the even numbers and crosses out the odd numbers.",
    "{friend} writes the numbers in reverse order.",
    "{name} sorts the numbers from smallest to largest.",
    "{name} counts how many numbers in the list are greater than {n}.",
    "{friend} crosses out the numbers that are smaller than {n}.",
    "{name} adds {n} to every number in the list.",
    "{friend} multiplies every number in the list by {n}.",
    "{name} writes the word in capital letters.",
    "{friend} reads the word backwards, from the last letter to the first.",
    "{name} counts the letters in a long word.",
    "{friend} counts the vowels in the word.",
    "{name} writes the words in alphabetical order.",
    "{friend} finds the longest word in the sentence.",
    "The teacher asks {name} to find the sum of the numbers.",
    "{name} buys {q} at the market.",
    "{friend} gives {name} {q}.",
    "{name} and {friend} share the {objs} equally.",
    "Each {box} holds {q}.",
    "After school, {name} and {friend} meet {at_place}.",
    "{friend} sells {objs} at the market.",
    "{name} checks whether the number {n} is even.",
    "{friend} joins the words with spaces into one sentence.",
    "{name} multiplies all the numbers in the list together.",
    "{friend} keeps the words that have more than {k} letters.",
    "Every morning {name} reads a book {at_place}.",
    "{friend} loses {q} on the way home.",
    "{name} gives away some {objs}.",
    "There are {objs} in the {box} on the table.",
)
