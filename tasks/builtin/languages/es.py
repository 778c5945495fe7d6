"""Spanish: articles and "cuántos/cuántas" agree with the noun's gender; every container noun is feminine."""

from __future__ import annotations

NAMES = {
    "f": ("María", "Lucía", "Carmen", "Sofía", "Elena", "Isabel", "Ana", "Laura"),
    "m": ("Carlos", "Javier", "Miguel", "Pablo", "Diego", "Luis", "Jorge", "Antonio"),
}

# noun id -> (singular, plural, gender)
NOUNS = {
    "apple": ("manzana", "manzanas", "f"),
    "pencil": ("lápiz", "lápices", "m"),
    "book": ("libro", "libros", "m"),
    "cookie": ("galleta", "galletas", "f"),
    "flower": ("flor", "flores", "f"),
    "stamp": ("sello", "sellos", "m"),
    "marble": ("canica", "canicas", "f"),
    "card": ("tarjeta", "tarjetas", "f"),
    "orange": ("naranja", "naranjas", "f"),
    "candy": ("caramelo", "caramelos", "m"),
    "box": ("caja", "cajas", "f"),
    "bag": ("bolsa", "bolsas", "f"),
    "basket": ("cesta", "cestas", "f"),
    "coin": ("moneda", "monedas", "f"),
}

# place id -> (at the place, to the place)
PLACES = {
    "shop": ("en la tienda", "a la tienda"),
    "park": ("en el parque", "al parque"),
    "school": ("en la escuela", "a la escuela"),
    "garden": ("en el jardín", "al jardín"),
    "library": ("en la biblioteca", "a la biblioteca"),
}

# words that agree with the gender of the counted noun
AGREEMENT = {
    "f": {"los": "las", "unos": "unas", "cuantos": "Cuántas", "todos_los": "todas las", "cada": "cada una"},
    "m": {"los": "los", "unos": "unos", "cuantos": "Cuántos", "todos_los": "todos los", "cada": "cada uno"},
}

# how sentences of one paragraph are joined
SENTENCE_SEPARATOR = " "


def counted(n: int, noun_id: str, case: str = "nom") -> str:
    """`n` with its noun: "1 manzana", "5 manzanas"."""
    singular, plural, _ = NOUNS[noun_id]
    return f"{n} {singular if n == 1 else plural}"


def slots(person: tuple[str, int], friend: tuple[str, int], object_id: str, container_id: str, place_id: str) -> dict:
    """The word forms the Spanish templates use."""
    singular, plural, gender = NOUNS[object_id]
    at_place, to_place = PLACES[place_id]
    return {
        "name": NAMES[person[0]][person[1]],
        "friend": NAMES[friend[0]][friend[1]],
        "obj": singular,
        "objs": plural,
        "box": NOUNS[container_id][0],
        "at_place": at_place,
        "to_place": to_place,
        **AGREEMENT[gender],
    }


MATH_CLAUSES = {
    "have": ("{name} tiene {q}.", "{name} guarda {q} en casa."),
    "more": ("{name} compra {q} más.", "{friend} le da a {name} {q} más.", "Luego {name} encuentra {q} más."),
    "less": ("{name} le da {q} a {friend}.", "{name} regala {q}.", "Luego {name} pierde {q}."),
    "boxes": ("{name} tiene {boxes} con {q} en cada una.", "{name} trae {boxes} y en cada {box} hay {q}."),
    "ask_now": ("¿{cuantos} {objs} tiene {name} ahora?",),
    "ask_all": ("¿{cuantos} {objs} tiene {name} en total?",),
    "share_ask": (
        "{name} reparte {los} {objs} en partes iguales entre {n} amigos. ¿{cuantos} {objs} recibe cada amigo?",
        "{name} reparte {los} {objs} en partes iguales entre {n} alumnos. ¿{cuantos} {objs} recibe cada alumno?",
    ),
    "sell_ask": (
        "{name} vende {todos_los} {objs} a {coins} {cada}. ¿Cuántas monedas recibe {name}?",
        "{name} vende {los} {objs} y cada {obj} cuesta {coins}. ¿Cuántas monedas recibe {name} en total?",
    ),
}

CODE_PHRASES = {
    "add_each": "Devuelve una lista nueva en la que se suma {k} a cada número de xs.",
    "subtract_each": "Devuelve una lista nueva en la que se resta {k} a cada número de xs.",
    "multiply_each": "Devuelve una lista nueva en la que cada número de xs se multiplica por {k}.",
    "square_each": "Devuelve una lista nueva con el cuadrado de cada número de xs.",
    "keep_greater": "Devuelve los números de xs que son mayores que {k}, en su orden original.",
    "keep_less": "Devuelve los números de xs que son menores que {k}, en su orden original.",
    "keep_even": "Devuelve los números pares de xs, en su orden original.",
    "keep_odd": "Devuelve los números impares de xs, en su orden original.",
    "keep_multiples": "Devuelve los números de xs que son divisibles entre {k}, en su orden original.",
    "remove_value": "Devuelve xs sin los números iguales a {k}.",
    "sum_all": "Devuelve la suma de los números de xs.",
    "sum_even": "Devuelve la suma de los números pares de xs.",
    "sum_greater": "Devuelve la suma de los números de xs que son mayores que {k}.",
    "product": "Devuelve el producto de todos los números de xs.",
    "count_even": "Devuelve cuántos números pares hay en xs.",
    "count_greater": "Devuelve cuántos números de xs son mayores que {k}.",
    "count_value": "Devuelve cuántas veces aparece el número {k} en xs.",
    "contains_value": "Devuelve True si el número {k} aparece en xs, y False en caso contrario.",
    "maximum": "Devuelve el número más grande de xs.",
    "minimum": "Devuelve el número más pequeño de xs.",
    "spread": "Devuelve la diferencia entre el número más grande y el más pequeño de xs.",
    "reverse_list": "Devuelve los números de xs en orden inverso.",
    "sort_ascending": "Devuelve los números de xs ordenados de menor a mayor.",
    "sort_descending": "Devuelve los números de xs ordenados de mayor a menor.",
    "first_k": "Devuelve los primeros {k} números de xs.",
    "last_k": "Devuelve los últimos {k} números de xs.",
    "index_of_max": "Devuelve la posición (contando desde 0) del número más grande de xs.",
    "times_k": "Devuelve el número n multiplicado por {k}.",
    "is_even": "Devuelve True si n es par, y False en caso contrario.",
    "divisible_by": "Devuelve True si n es divisible entre {k}, y False en caso contrario.",
    "sum_to_n": "Devuelve la suma de todos los números del 1 al n.",
    "range_list": "Devuelve la lista de los números del 1 al n.",
    "multiples_list": "Devuelve la lista de los primeros n múltiplos de {k}.",
    "digit_sum": "Devuelve la suma de las cifras de n.",
    "factorial": "Devuelve el producto de todos los números del 1 al n.",
    "count_digits": "Devuelve cuántas cifras tiene el número n.",
    "square_n": "Devuelve el cuadrado de n.",
    "reverse_string": "Devuelve la cadena s escrita al revés.",
    "to_upper": "Devuelve la cadena s en letras mayúsculas.",
    "count_letter": 'Devuelve cuántas veces aparece la letra "{k}" en s.',
    "replace_letter": 'Devuelve s con cada letra "{k}" sustituida por "{k2}".',
    "first_chars": "Devuelve los primeros {k} caracteres de s.",
    "string_length": "Devuelve el número de caracteres de s.",
    "count_vowels": "Devuelve cuántas vocales (a, e, i, o, u) hay en s.",
    "is_palindrome": "Devuelve True si s se lee igual al derecho y al revés, y False en caso contrario.",
    "repeat_string": "Devuelve la cadena s repetida {k} veces.",
    "count_words": "Devuelve cuántas palabras hay en la frase s.",
    "join_words": "Devuelve una sola cadena con las palabras de words separadas por espacios.",
    "longest_word": "Devuelve la palabra más larga de words (la primera si hay varias igual de largas).",
    "word_lengths": "Devuelve una lista con la longitud de cada palabra de words.",
    "keep_long_words": "Devuelve las palabras de words que tienen más de {k} letras.",
    "starts_with": 'Devuelve las palabras de words que empiezan por la letra "{k}".',
    "upper_words": "Devuelve una lista con cada palabra de words escrita en letras mayúsculas.",
    "sort_words": "Devuelve las palabras de words en orden alfabético.",
}

GENERAL_SENTENCES = (
    "{name} va {to_place} con {friend}.",
    "A {name} le gustan mucho {los} {objs}.",
    "{name} tiene {q}.",
    "{friend} pone {los} {objs} en una {box}.",
    "{name} cuenta {los} {objs} {at_place}.",
    "{name} escribe una lista de números en un cuaderno.",
    "{friend} lee la lista desde el primer número hasta el último.",
    "{name} busca el número más grande de la lista.",
    "{friend} busca el número más pequeño de la lista.",
    "{name} deja solo los números pares y tacha los impares.",
    "{friend} escribe los números en orden inverso.",
    "{name} ordena los números de menor a mayor.",
    "{name} cuenta cuántos números de la lista son mayores que {n}.",
    "{friend} tacha los números que son menores que {n}.",
    "{name} suma {n} a cada número de la lista.",
    "{friend} multiplica cada número de la lista por {n}.",
    "{name} escribe la palabra en letras mayúsculas.",
    "{friend} lee la palabra al revés, de la última letra a la primera.",
    "{name} cuenta las letras de una palabra larga.",
    "{friend} cuenta las vocales de la palabra.",
    "{name} escribe las palabras en orden alfabético.",
    "{friend} busca la palabra más larga de la frase.",
    "La maestra le pide a {name} que calcule la suma de los números.",
    "{name} compra {q} en el mercado.",
    "{friend} le da {q} a {name}.",
    "{name} y {friend} reparten {los} {objs} en partes iguales.",
    "Cada {box} tiene {q}.",
    "Después de la escuela, {name} y {friend} se encuentran {at_place}.",
    "{friend} vende {objs} en el mercado.",
    "{name} comprueba si el número {n} es par.",
    "{friend} une las palabras con espacios en una sola frase.",
    "{name} multiplica todos los números de la lista entre sí.",
    "{friend} se queda con las palabras que tienen más de {k} letras.",
    "Cada mañana {name} lee un libro {at_place}.",
    "{friend} pierde {q} de camino a casa.",
    "{name} regala {unos} {objs}.",
    "En la {box} de la mesa hay {objs}.",
)
