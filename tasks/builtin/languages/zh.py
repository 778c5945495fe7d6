"""Chinese (Simplified): nouns carry their measure word (个, 支, 本, ...), counted as "5个苹果"."""

from __future__ import annotations

NAMES = {
    "f": ("小红", "王芳", "李娜", "张丽", "刘静", "陈敏", "小美", "杨雪"),
    "m": ("小明", "李强", "王伟", "张磊", "刘洋", "陈杰", "小刚", "赵军"),
}

# noun id -> (noun, measure word); money is counted in yuan, which needs no measure word
NOUNS = {
    "apple": ("苹果", "个"),
    "pencil": ("铅笔", "支"),
    "book": ("书", "本"),
    "cookie": ("饼干", "块"),
    "flower": ("花", "朵"),
    "stamp": ("邮票", "张"),
    "marble": ("弹珠", "颗"),
    "card": ("卡片", "张"),
    "orange": ("橙子", "个"),
    "candy": ("糖果", "颗"),
    "box": ("盒子", "个"),
    "bag": ("袋子", "个"),
    "basket": ("篮子", "个"),
    "coin": ("元", ""),
}

PLACES = {"shop": "商店", "park": "公园", "school": "学校", "garden": "花园", "library": "图书馆"}

# how sentences of one paragraph are joined
SENTENCE_SEPARATOR = ""


def counted(n: int, noun_id: str, case: str = "nom") -> str:
    """`n` with its measure word and noun: "5个苹果", "3支铅笔", "8元"."""
    noun, measure = NOUNS[noun_id]
    return f"{n}{measure}{noun}"


def slots(person: tuple[str, int], friend: tuple[str, int], object_id: str, container_id: str, place_id: str) -> dict:
    """The word forms the Chinese templates use."""
    return {
        "name": NAMES[person[0]][person[1]],
        "friend": NAMES[friend[0]][friend[1]],
        "obj": NOUNS[object_id][0],
        "mw": NOUNS[object_id][1],
        "box": NOUNS[container_id][0],
        "box_mw": NOUNS[container_id][1],
        "place": PLACES[place_id],
        "at_place": "在" + PLACES[place_id],
    }


MATH_CLAUSES = {
    "have": ("{name}有{q}。", "{name}家里有{q}。"),
    "more": ("{name}又买了{q}。", "{friend}又给了{name}{q}。", "后来{name}又找到了{q}。"),
    "less": ("{name}送给{friend}{q}。", "{name}送出了{q}。", "后来{name}丢了{q}。"),
    "boxes": ("{name}有{boxes}，每{box_mw}{box}里有{q}。", "{name}拿来{boxes}，每{box_mw}{box}里都装着{q}。"),
    "ask_now": ("{name}现在有多少{mw}{obj}？",),
    "ask_all": ("{name}一共有多少{mw}{obj}？",),
    "share_ask": (
        "{name}把这些{obj}平均分给{n}个朋友。每个朋友分到多少{mw}{obj}？",
        "{name}把这些{obj}平均发给{n}个学生。每个学生分到多少{mw}{obj}？",
    ),
    "sell_ask": (
        "{name}把这些{obj}全部卖掉，每{mw}卖{coins}。{name}一共得到多少元？",
        "{name}卖这些{obj}，每{mw}{coins}。{name}把它们全部卖掉，一共得到多少元？",
    ),
}

CODE_PHRASES = {
    "add_each": "返回一个新列表：把 xs 中的每个数都加上 {k}。",
    "subtract_each": "返回一个新列表：把 xs 中的每个数都减去 {k}。",
    "multiply_each": "返回一个新列表：把 xs 中的每个数都乘以 {k}。",
    "square_each": "返回一个新列表，包含 xs 中每个数的平方。",
    "keep_greater": "按原来的顺序返回 xs 中大于 {k} 的数。",
    "keep_less": "按原来的顺序返回 xs 中小于 {k} 的数。",
    "keep_even": "按原来的顺序返回 xs 中的偶数。",
    "keep_odd": "按原来的顺序返回 xs 中的奇数。",
    "keep_multiples": "按原来的顺序返回 xs 中能被 {k} 整除的数。",
    "remove_value": "返回去掉所有等于 {k} 的数之后的 xs。",
    "sum_all": "返回 xs 中所有数的和。",
    "sum_even": "返回 xs 中所有偶数的和。",
    "sum_greater": "返回 xs 中大于 {k} 的数的和。",
    "product": "返回 xs 中所有数的乘积。",
    "count_even": "返回 xs 中偶数的个数。",
    "count_greater": "返回 xs 中大于 {k} 的数的个数。",
    "count_value": "返回数字 {k} 在 xs 中出现的次数。",
    "contains_value": "如果数字 {k} 出现在 xs 中，返回 True，否则返回 False。",
    "maximum": "返回 xs 中最大的数。",
    "minimum": "返回 xs 中最小的数。",
    "spread": "返回 xs 中最大的数与最小的数之差。",
    "reverse_list": "按相反的顺序返回 xs 中的数。",
    "sort_ascending": "返回 xs 中的数，按从小到大的顺序排列。",
    "sort_descending": "返回 xs 中的数，按从大到小的顺序排列。",
    "first_k": "返回 xs 的前 {k} 个数。",
    "last_k": "返回 xs 的最后 {k} 个数。",
    "index_of_max": "返回 xs 中最大的数的位置（从 0 开始计数）。",
    "times_k": "返回 n 乘以 {k} 的结果。",
    "is_even": "如果 n 是偶数，返回 True，否则返回 False。",
    "divisible_by": "如果 n 能被 {k} 整除，返回 True，否则返回 False。",
    "sum_to_n": "返回从 1 到 n 的所有数的和。",
    "range_list": "返回由从 1 到 n 的数组成的列表。",
    "multiples_list": "返回由 {k} 的前 n 个倍数组成的列表。",
    "digit_sum": "返回 n 的各位数字之和。",
    "factorial": "返回从 1 到 n 的所有数的乘积。",
    "count_digits": "返回数字 n 的位数。",
    "square_n": "返回 n 的平方。",
    "reverse_string": "返回把字符串 s 倒过来写的结果。",
    "to_upper": "返回全部改成大写字母的字符串 s。",
    "count_letter": '返回字母 "{k}" 在 s 中出现的次数。',
    "replace_letter": '返回把 s 中的每个字母 "{k}" 都换成 "{k2}" 之后的字符串。',
    "first_chars": "返回 s 的前 {k} 个字符。",
    "string_length": "返回 s 中字符的个数。",
    "count_vowels": "返回 s 中元音字母（a、e、i、o、u）的个数。",
    "is_palindrome": "如果 s 正着读和倒着读都一样，返回 True，否则返回 False。",
    "repeat_string": "返回把字符串 s 重复 {k} 次的结果。",
    "count_words": "返回句子 s 中单词的个数。",
    "join_words": "返回用空格把 words 中的单词连接起来的字符串。",
    "longest_word": "返回 words 中最长的单词（如果有几个一样长，返回第一个）。",
    "word_lengths": "返回一个列表，包含 words 中每个单词的长度。",
    "keep_long_words": "返回 words 中字母多于 {k} 个的单词。",
    "starts_with": '返回 words 中以字母 "{k}" 开头的单词。',
    "upper_words": "返回一个列表，把 words 中的每个单词都改成大写字母。",
    "sort_words": "按字母顺序返回 words 中的单词。",
}

GENERAL_SENTENCES = (
    "{name}和{friend}一起去{place}。",
    "{name}非常喜欢{obj}。",
    "{name}有{q}。",
    "{friend}把{obj}放进{box}里。",
    "{name}{at_place}数{obj}。",
    "{name}在本子上写了一个数字列表。",
    "{friend}把列表从第一个数读到最后一个数。",
    "{name}找出列表中最大的数。",
    "{friend}找出列表中最小的数。",
    "{name}只留下偶数，把奇数划掉。",
    "{friend}按相反的顺序写出这些数。",
    "{name}把这些数从小到大排好。",
    "{name}数一数列表中有多少个数大于{n}。",
    "{friend}划掉小于{n}的数。",
    "{name}把列表中的每个数都加上{n}。",
    "{friend}把列表中的每个数都乘以{n}。",
    "{name}用大写字母写这个单词。",
    "{friend}从最后一个字母到第一个字母倒着读这个单词。",
    "{name}数一个长单词里的字母。",
    "{friend}数这个单词里的元音字母。",
    "{name}按字母顺序写出这些单词。",
    "{friend}找出句子中最长的单词。",
    "老师让{name}求出这些数的和。",
    "{name}在市场上买了{q}。",
    "{friend}给了{name}{q}。",
    "{name}和{friend}平均分了这些{obj}。",
    "每{box_mw}{box}里装着{q}。",
    "放学后，{name}和{friend}{at_place}见面。",
    "{friend}在市场上卖{obj}。",
    "{name}检查数字{n}是不是偶数。",
    "{friend}用空格把这些单词连成一个句子。",
    "{name}把列表中的所有数乘在一起。",
    "{friend}留下字母多于{k}个的单词。",
    "每天早上{name}都{at_place}看书。",
    "{friend}在回家的路上丢了{q}。",
    "{name}送出了一些{obj}。",
    "桌子上的{box}里有{obj}。",
)
